//! Who co-signs a price: a small committee drawn per price, so that a price costs a constant
//! number of signatures however many members there are.
//!
//! Every member other than the origin gets a score, `keccak256(be8(id) ‖ address)`; the members
//! with the lowest scores co-sign first. The first `3f` of them (with the origin, `3f + 1`) sign
//! as soon as they hear the price. If the price is still short of its quorum after `fallback` (a member
//! down, a source that disagrees, a lost message), the next `step` members in the ranking step
//! in, and another `step` after each further `fallback` — a staggered schedule like OCR's
//! transmission schedule, so silent members cost time, not liveness. Anyone holding the member
//! list can recompute who was expected to sign a stored row. Pure: no IO.

use std::time::Duration;

use alloy_primitives::{Address, B256, keccak256};

use crate::domain::FaultBound;

/// The committee's fallback schedule; its size follows from the fault bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitteeSettings {
    /// How long a price may lack its quorum before the next members step in
    /// (`--cosign-fallback`).
    pub fallback: Duration,
}

impl CommitteeSettings {
    pub fn new(fallback: Duration) -> Self {
        Self { fallback }
    }

    /// Co-signers who sign at once under fault bound `f`: the committee is `3f + 1` members
    /// with the origin, so `f` of them silent or refusing still leave the `2f + 1` a report
    /// needs, and a round costs O(f) messages, not O(n).
    pub fn size(f: FaultBound) -> usize {
        f.committee_size() - 1
    }

    /// Members who step in at each fallback: `f` (at least one), as many as may be missing.
    pub fn step(f: FaultBound) -> usize {
        f.faults().max(1)
    }

    /// How long a member ranked `rank` (0 = first) waits before it co-signs under fault bound
    /// `f`: nothing inside the committee, one more `fallback` per `step` ranks after it.
    pub fn wait(&self, rank: usize, f: FaultBound) -> Duration {
        match rank.checked_sub(Self::size(f)) {
            None => Duration::ZERO,
            Some(behind) => {
                let steps = behind / Self::step(f) + 1;
                self.fallback
                    .saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX))
            }
        }
    }
}

impl CommitteeSettings {
    /// Whether an observation by the member ranked `rank` counts in a round under fault bound
    /// `f`, when it came `since` after the round was first heard here: inside the committee
    /// always; behind it only once its turn had come, `early` sooner at most (for the
    /// difference between two nodes' hearing of the round). So colluders outside a round's
    /// committee cannot race the fallback members to fill its quorum.
    pub fn in_turn(&self, rank: usize, f: FaultBound, since: Duration, early: Duration) -> bool {
        since.saturating_add(early) >= self.wait(rank, f)
    }

    /// How much sooner than its turn a member's observation may come to a node checking the
    /// origin's report: half a fallback, far more than gossip takes between two nodes.
    pub fn report_slack(&self) -> Duration {
        self.fallback / 2
    }
}

/// The member's score for price `id`: lower co-signs earlier.
pub fn score(id: u64, member: &Address) -> B256 {
    let mut input = [0u8; 28];
    input[..8].copy_from_slice(&id.to_be_bytes());
    input[8..].copy_from_slice(member.as_slice());
    keccak256(input)
}

/// `me`'s place in the co-signing order of price `id` among `members` (0 = first), or `None`
/// when `me` is the origin or not a member. Costs one hash per member.
pub fn rank_of<'a>(
    id: u64,
    origin: &Address,
    me: &Address,
    members: impl IntoIterator<Item = &'a Address>,
) -> Option<usize> {
    if me == origin {
        return None;
    }
    let mine = score(id, me);
    let mut listed = false;
    let mut ahead = 0;
    for member in members {
        if member == me {
            listed = true;
        } else if member != origin && (score(id, member), member) < (mine, me) {
            ahead += 1;
        }
    }
    listed.then_some(ahead)
}

/// The whole co-signing order of price `id`: every member but the origin, first to sign first.
pub fn ranking<'a>(
    id: u64,
    origin: &Address,
    members: impl IntoIterator<Item = &'a Address>,
) -> Vec<Address> {
    by_score(
        members
            .into_iter()
            .filter(|member| *member != origin)
            .map(|member| (score(id, member), *member)),
    )
}

/// Members in ascending order of their scores (ties: the smaller address), each once: how both
/// the committee and the round starters are ranked.
pub fn by_score(scored: impl IntoIterator<Item = (B256, Address)>) -> Vec<Address> {
    let mut ranked: Vec<(B256, Address)> = scored.into_iter().collect();
    ranked.sort_unstable();
    ranked.dedup();
    ranked.into_iter().map(|(_, member)| member).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u8) -> Vec<Address> {
        (1..=n).map(Address::repeat_byte).collect()
    }

    #[test]
    fn the_ranking_is_deterministic_and_excludes_the_origin() {
        let all = members(20);
        let origin = all[3];
        let ranked = ranking(42, &origin, &all);
        assert_eq!(ranked.len(), 19);
        assert!(!ranked.contains(&origin));
        let mut shuffled = all.clone();
        shuffled.reverse();
        shuffled.rotate_left(7);
        assert_eq!(ranking(42, &origin, &shuffled), ranked, "order of input");
        assert_eq!(ranking(42, &origin, &all), ranked, "same call twice");
        for (place, member) in ranked.iter().enumerate() {
            assert_eq!(rank_of(42, &origin, member, &shuffled), Some(place));
        }
        assert_eq!(rank_of(42, &origin, &origin, &all), None);
    }

    #[test]
    fn non_members_have_no_rank_and_do_not_push_members_back() {
        let all = members(10);
        let outsider = Address::repeat_byte(0xee);
        assert_eq!(rank_of(7, &all[0], &outsider, &all), None);
        let ranked = ranking(7, &all[0], &all);
        let with_outsider_origin = ranking(7, &outsider, &all);
        assert_eq!(with_outsider_origin.len(), 10);
        assert!(!ranked.contains(&outsider));
    }

    #[test]
    fn each_price_draws_its_own_committee() {
        let all = members(50);
        let firsts: std::collections::HashSet<Address> =
            (0..40u64).map(|id| ranking(id, &all[0], &all)[0]).collect();
        assert!(
            firsts.len() > 20,
            "40 prices put only {} members first",
            firsts.len()
        );
    }

    #[test]
    fn the_committee_grows_with_f_and_the_rest_step_in_by_turns() {
        let settings = CommitteeSettings::new(Duration::from_secs(2));
        let two = FaultBound::new(2);
        assert_eq!(
            (CommitteeSettings::size(two), CommitteeSettings::step(two)),
            (6, 2)
        );
        for rank in 0..6 {
            assert_eq!(settings.wait(rank, two), Duration::ZERO);
        }
        assert_eq!(settings.wait(6, two), Duration::from_secs(2));
        assert_eq!(settings.wait(7, two), Duration::from_secs(2));
        assert_eq!(settings.wait(8, two), Duration::from_secs(4));
        assert_eq!(settings.wait(11, two), Duration::from_secs(6));
        let one = FaultBound::new(1);
        assert_eq!(
            (CommitteeSettings::size(one), CommitteeSettings::step(one)),
            (3, 1)
        );
        assert_eq!(settings.wait(3, one), Duration::from_secs(2));
        assert_eq!(settings.wait(4, one), Duration::from_secs(4));
        let none = FaultBound::new(0);
        assert_eq!(
            CommitteeSettings::size(none),
            0,
            "the origin alone is the quorum"
        );
    }

    #[test]
    fn behind_the_committee_an_observation_is_in_turn_from_its_fallback_on() {
        let settings = CommitteeSettings::new(Duration::from_secs(4));
        let f = FaultBound::new(1);
        let second = |s: u64| Duration::from_secs(s);
        // Ranks 0..3 are the committee (3f co-signers): always in turn.
        assert!(settings.in_turn(2, f, Duration::ZERO, Duration::ZERO));
        // Rank 3 waits one fallback, rank 4 two (a step of f = 1).
        assert!(!settings.in_turn(3, f, second(3), Duration::ZERO));
        assert!(settings.in_turn(3, f, second(4), Duration::ZERO));
        assert!(settings.in_turn(3, f, second(3), settings.report_slack()));
        assert!(!settings.in_turn(4, f, second(7), Duration::ZERO));
        assert!(settings.in_turn(4, f, second(8), Duration::ZERO));
    }
}
