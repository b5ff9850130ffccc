//! Rows no quorum of members made, each signed by the keys in it, for tests that write them by
//! hand as whoever can write `prices` could (`testkit::insert_by_hand`): every reader and
//! `oracle verify` must refuse them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use price_oracle::audit::FindingKind;
use price_oracle::identity::Identity;
use price_oracle::signed::Report;
use price_oracle::testkit;

/// Rows the admin credential (or anyone who can write `prices`) could write by hand, each signed
/// by the keys in it but none a report the members made, and how each is refused: one member's
/// observation of 1 USD dated 2030 with two outsiders', three outsiders' at 2,500 USD, and one
/// member's at 3,000 with two outsiders' at 2,500 (their median).
pub fn rows() -> Vec<(Report, FindingKind)> {
    let members: Vec<Identity> = (1..=3).map(testkit::identity).collect();
    let outsiders: Vec<Identity> = (9..=11).map(testkit::identity).collect();
    let config = testkit::config_of(&testkit::addresses(1..=3));
    let in_2030 = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
    let a_minute_ago = SystemTime::now() - Duration::from_secs(60);
    vec![
        (
            testkit::report_signed_by(
                config,
                in_2030,
                &[
                    (&members[0], "1"),
                    (&outsiders[0], "1"),
                    (&outsiders[1], "1"),
                ],
                &[&members[0]],
            ),
            FindingKind::FromFuture,
        ),
        (
            testkit::report_signed_by(
                config,
                a_minute_ago,
                &[
                    (&outsiders[0], "2500"),
                    (&outsiders[1], "2500"),
                    (&outsiders[2], "2500"),
                ],
                &[&outsiders[0], &outsiders[1]],
            ),
            FindingKind::NonMember,
        ),
        (
            testkit::report_signed_by(
                config,
                a_minute_ago,
                &[
                    (&members[0], "3000"),
                    (&outsiders[0], "2500"),
                    (&outsiders[1], "2500"),
                ],
                &[&members[0]],
            ),
            FindingKind::NonMember,
        ),
    ]
}
