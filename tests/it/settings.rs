//! A node holds settings built by hand (the test harness, a benchmark) to the rules the command
//! line's are held to: it refuses to start with them broken.

use std::time::Duration;

use price_oracle::node::{self, InvalidSettings, Metrics};
use price_oracle::testkit::{loopback, mock_exchange, node_settings, settings_for};

#[tokio::test]
async fn a_node_refuses_to_start_with_broken_settings_whoever_built_them() {
    // No database or network is reached: the check comes first.
    let exchange = mock_exchange("3000").await;
    let db = settings_for("postgres://127.0.0.1:1/none");
    let settings = || node_settings(1, &loopback(), &exchange, &db);
    let mut heartbeat_too_short = settings();
    heartbeat_too_short.trigger.heartbeat = heartbeat_too_short.trigger.observe_interval;
    let mut no_deviation = settings();
    no_deviation.trigger.deviation = rust_decimal::Decimal::ZERO;
    let mut never_observes = settings();
    never_observes.trigger.observe_interval = Duration::from_millis(10);
    let mut gives_up_before_observing = settings();
    gives_up_before_observing.trigger.progress_timeout =
        gives_up_before_observing.trigger.observe_interval;
    let mut zero_max_age = settings();
    zero_max_age.pool.max_age = Duration::ZERO;
    for (broken, expected) in [
        (heartbeat_too_short, "--heartbeat"),
        (no_deviation, "--deviation"),
        (never_observes, "--observe-interval"),
        (gives_up_before_observing, "--progress-timeout"),
        (zero_max_age, "--max-age"),
    ] {
        let refused = broken.validate().expect_err(expected);
        assert!(refused.to_string().starts_with(expected), "{refused}");
        let Err(error) = node::start(broken, Metrics::default()).await else {
            panic!("a node started with a broken {expected}");
        };
        assert!(
            error.downcast_ref::<InvalidSettings>().is_some(),
            "{expected}: {error:#}"
        );
    }
    assert_eq!(settings().validate(), Ok(()));
}
