//! When a round starts. A node observes each of its pairs every `--observe-interval`; a round of
//! a pair is due when the node's observation is `--deviation` or more from the pair's newest
//! verified value (the market moved), or when that value is about to be `--heartbeat` old.
//! Everything here is pure: the node passes what it observes, what it hears and `now`.
//!
//! **Who starts.** A move is seen by every member at about the same time, and must not start a
//! round at each. The members are ranked per pair and per verified value by
//! `keccak256(keccak256(pair) ‖ be8(newest verified id) ‖ address)` ([`score`]), lowest first.
//! The first starts as soon as its own observation says a round is due. The member ranked `r`
//! starts only after `r` observe intervals and a half more have passed since its own
//! observation first said so, and only if it has heard no round meanwhile that it would join
//! (one whose origin's price is within `--max-deviation` of its own observation): by then
//! every member ahead of it has observed at least once. So a move costs one round while the
//! first member is up, two at worst, at any network size; a member that is down costs the
//! next one a little time. The ranking changes with every verified value, so no member is
//! always first.
//!
//! **A member that sees another market** (a broken or lying source) would otherwise start a
//! round at every observation: its view stays `--deviation` from the verified value, which its
//! rounds do not move (their value is the median of every member's observation, or nobody joins
//! them). So after starting a round a node remembers the view it started from, and starts again
//! on a move only once its view has moved `--deviation` from there; the heartbeat still applies.
//! The memory is dropped once its view is back near the verified value.
//!
//! **The heartbeat** is due one observe interval early, so that with the defaults a pair gets a
//! verified value at least every `--heartbeat` while its first-ranked member is up.
//!
//! **A round that makes no progress** stands for nothing: otherwise one member publishing a
//! round every few seconds that nobody can verify (an observation too old to be signed, or two
//! different observations for one round) would keep every other member from starting one. An
//! origin's rounds heard since the pair's newest verified value stand for the pair for
//! `--progress-timeout` from the first of them, and not past it; an origin caught signing two
//! observations for its own round (the pool says so) ends that round at once. Either way the
//! round failed: the next-ranked member starts one, and the failure counts against its origin.
//! A member with [`FAILURES_TO_PENALTY`] failures in a row (a verified round of its own ends the
//! row) loses its starter turn for [`PENALTY_TIMEOUTS`] progress timeouts: it is ranked after
//! every other member, and its rounds stand for nothing; each further failure in the row starts
//! the penalty again. So one member delays a round by at most one progress timeout, and after
//! its second failed round only once per penalty.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, keccak256};
use rust_decimal::Decimal;

use crate::membership::Members;
use crate::pair::Pair;
use crate::price::UsdPrice;
use crate::signed::ROUND_WINDOW;

/// Failed rounds in a row after which their origin loses its starter turn: one may be bad luck
/// (a market that moved past `--max-deviation` while the round ran), two are a pattern.
pub const FAILURES_TO_PENALTY: u32 = 2;

/// How long a member loses its starter turn, in progress timeouts (5 minutes by default).
pub const PENALTY_TIMEOUTS: u32 = 10;

/// When rounds start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerSettings {
    /// How often each pair is observed (`--observe-interval`).
    pub observe_interval: Duration,
    /// A move this large from the newest verified value starts a round (`--deviation`).
    pub deviation: Decimal,
    /// A verified value this old starts a round however flat the market (`--heartbeat`).
    pub heartbeat: Duration,
    /// A round whose origin's price is farther than this from ours is one we would not join
    /// (`--max-deviation`), so it does not stand for our move.
    pub max_deviation: Decimal,
    /// An origin's rounds stand for their pair this long from the first of them heard, unless
    /// one verifies (`--progress-timeout`).
    pub progress_timeout: Duration,
}

impl TriggerSettings {
    /// How long a member whose rounds keep failing loses its starter turn.
    pub fn penalty(&self) -> Duration {
        self.progress_timeout.saturating_mul(PENALTY_TIMEOUTS)
    }
}

crate::labels::label_values! {
    /// Why a round started, as the `trigger` label of `rounds_started` names it.
    pub enum Reason {
        /// The market moved `--deviation` from the newest verified value.
        Deviation => "deviation",
        /// The newest verified value is about to be `--heartbeat` old, or there is none.
        Heartbeat => "heartbeat",
        /// Asked for (`RunningNode::originate_now`): tests, benchmarks.
        Requested => "requested",
    }
}

crate::labels::label_values! {
    /// Why a round stopped standing for its pair unverified, as the `cause` label of
    /// `rounds_stalled` names it.
    pub enum StallCause {
        /// Not verified within `--progress-timeout` of its origin's first round heard.
        Timeout => "timeout",
        /// Its origin signed two different observations for it.
        Equivocation => "equivocation",
    }
}

/// A member's round failed here: what the node logs and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    pub pair: Pair,
    pub origin: Address,
    /// Its newest round heard; `None` for this node's own, whose id the triggers do not learn.
    pub id: Option<u64>,
    pub cause: StallCause,
    /// This failure cost its origin its starter turn for that long.
    pub penalty: Option<Duration>,
}

/// The newest verified value of a pair: its round's id, origin and time, and its median.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub id: u64,
    pub origin: Address,
    /// The round's time (its origin's observation), unix seconds.
    pub observed_at: u64,
    pub value: UsdPrice,
}

/// What an observation means for a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start a round now.
    Start(Reason),
    /// A round is due, and a member ranked ahead of this one has the first go until `until`.
    Wait { rank: usize, until: Instant },
    /// A round is due, and one this node would join is under way.
    Covered,
    /// No round is due (or this node is not a member, whose rounds would not count).
    Quiet,
}

/// One origin's rounds heard for a pair (or started by this node) since the pair's newest
/// verified value.
#[derive(Debug, Clone, Copy)]
struct Heard {
    origin: Address,
    /// Its newest round; `None` for this node's own.
    id: Option<u64>,
    price: UsdPrice,
    /// When its newest round was heard.
    at: Instant,
    /// When the first was: its rounds stand for the pair until `--progress-timeout` after.
    since: Instant,
    /// One of them failed: they stand for nothing until the pair's next verified value.
    failed: bool,
}

#[derive(Debug, Default)]
struct PairState {
    verified: Option<Verified>,
    /// One entry per origin.
    heard: Vec<Heard>,
    /// When this node's own observation first said a round is due: its turn counts from then.
    due_since: Option<Instant>,
    /// The view this node last started a round from, while it stays apart from the verified
    /// value.
    anchor: Option<UsdPrice>,
}

/// How a member's rounds have fared here.
#[derive(Debug, Clone, Copy, Default)]
struct Standing {
    /// Its rounds that failed since its last verified one.
    failures: u32,
    /// Ranked last, and its rounds standing for nothing, until then.
    penalized_until: Option<Instant>,
}

impl Standing {
    fn penalized(&self, now: Instant) -> bool {
        self.penalized_until.is_some_and(|until| now < until)
    }
}

/// The round triggers of one node, for every pair.
#[derive(Debug)]
pub struct Triggers {
    settings: TriggerSettings,
    me: Address,
    pairs: HashMap<Pair, PairState>,
    /// Only members whose rounds failed lately have one.
    standing: HashMap<Address, Standing>,
    /// Failures not yet taken by the node.
    stalled: Vec<Stalled>,
}

impl Triggers {
    pub fn new(settings: TriggerSettings, me: Address) -> Self {
        Self {
            settings,
            me,
            pairs: HashMap::new(),
            standing: HashMap::new(),
            stalled: Vec::new(),
        }
    }

    pub fn settings(&self) -> &TriggerSettings {
        &self.settings
    }

    /// The newest verified value of `pair` this node knows of.
    pub fn verified_value(&self, pair: Pair) -> Option<Verified> {
        self.pairs.get(&pair).and_then(|state| state.verified)
    }

    /// Whether `member` has lost its starter turn at `now`.
    pub fn penalized(&self, member: &Address, now: Instant) -> bool {
        self.standing
            .get(member)
            .is_some_and(|standing| standing.penalized(now))
    }

    /// The rounds that failed since the last call, oldest first.
    pub fn take_stalled(&mut self) -> Vec<Stalled> {
        std::mem::take(&mut self.stalled)
    }

    /// A round of `pair` reached its quorum (or was found stored at start). Its origin's row of
    /// failures ends. Older values than the newest known are ignored. The rounds heard before it
    /// no longer stand for a move: the next move is measured from this value.
    pub fn verified(&mut self, pair: Pair, verified: Verified, now: Instant) {
        self.sweep(now);
        if let Some(standing) = self.standing.get_mut(&verified.origin) {
            standing.failures = 0;
            if !standing.penalized(now) {
                self.standing.remove(&verified.origin);
            }
        }
        let state = self.pairs.entry(pair).or_default();
        let newer = state.verified.is_none_or(|known| {
            (verified.observed_at, verified.id) > (known.observed_at, known.id)
        });
        if !newer {
            return;
        }
        state.verified = Some(verified);
        state.due_since = None;
        state.heard.clear();
    }

    /// `origin` started round `id` of `pair`, its own price `price`. A round already verified
    /// (heard again, or late) is not one under way.
    pub fn heard(&mut self, pair: Pair, id: u64, origin: Address, price: UsdPrice, now: Instant) {
        self.sweep(now);
        let state = self.pairs.entry(pair).or_default();
        if state.verified.is_some_and(|known| known.id >= id) {
            return;
        }
        state.hear(origin, Some(id), price, now);
    }

    /// The pool holds two different observations of `origin` for its own round `id` of `pair`:
    /// the round can never verify. It stands for nothing from now on, and fails.
    pub fn equivocated(
        &mut self,
        pair: Pair,
        id: u64,
        origin: Address,
        price: UsdPrice,
        now: Instant,
    ) {
        self.sweep(now);
        let state = self.pairs.entry(pair).or_default();
        if state.verified.is_some_and(|known| known.id >= id) {
            return;
        }
        let counted = state
            .heard
            .iter()
            .any(|heard| heard.origin == origin && heard.failed && heard.id == Some(id));
        let heard = state.hear(origin, Some(id), price, now);
        heard.failed = true;
        if !counted {
            self.fail(pair, origin, Some(id), StallCause::Equivocation, now);
        }
    }

    /// This node observed `ours` for `pair` at `now` (`wall` in unix seconds): whether it starts
    /// a round. `requested` starts one whatever the market did.
    pub fn observed(
        &mut self,
        pair: Pair,
        ours: UsdPrice,
        now: Instant,
        wall: u64,
        members: &Members,
        requested: bool,
    ) -> Decision {
        self.sweep(now);
        let settings = self.settings;
        let me = self.me;
        let standing = &self.standing;
        let penalized = |member: &Address| {
            standing
                .get(member)
                .is_some_and(|standing| standing.penalized(now))
        };
        let state = self.pairs.entry(pair).or_default();
        let reason = if requested {
            Some(Reason::Requested)
        } else {
            state.due_reason(ours, wall, &settings)
        };
        let Some(reason) = reason else {
            state.due_since = None;
            return Decision::Quiet;
        };
        if reason != Reason::Requested {
            if state.joinable_round(ours, now, &settings, me, penalized) {
                state.due_since = None;
                return Decision::Covered;
            }
            let last_id = state.verified.map_or(0, |known| known.id);
            let Some(rank) = ranked(pair, last_id, &me, members, wall, penalized) else {
                return Decision::Quiet;
            };
            let until =
                *state.due_since.get_or_insert(now) + start_wait(rank, settings.observe_interval);
            if now < until {
                return Decision::Wait { rank, until };
            }
        }
        state.due_since = None;
        state.anchor = Some(ours);
        // Our own round stands for the move (and the heartbeat) while it runs: a fresh one
        // gets the whole progress timeout, whatever became of our last.
        let own = state.hear(me, None, ours, now);
        own.since = now;
        own.failed = false;
        Decision::Start(reason)
    }

    /// Fails every origin whose rounds have stood for their pair longer than the progress
    /// timeout without a verified value.
    fn sweep(&mut self, now: Instant) {
        let timeout = self.settings.progress_timeout;
        let mut failed = Vec::new();
        for (pair, state) in &mut self.pairs {
            for heard in &mut state.heard {
                if !heard.failed && now.saturating_duration_since(heard.since) > timeout {
                    heard.failed = true;
                    failed.push((*pair, heard.origin, heard.id));
                }
            }
        }
        for (pair, origin, id) in failed {
            self.fail(pair, origin, id, StallCause::Timeout, now);
        }
    }

    /// Counts a failed round against its origin, which loses its turn once they keep failing.
    fn fail(
        &mut self,
        pair: Pair,
        origin: Address,
        id: Option<u64>,
        cause: StallCause,
        now: Instant,
    ) {
        let penalty = self.settings.penalty();
        let standing = self.standing.entry(origin).or_default();
        standing.failures = standing.failures.saturating_add(1);
        let penalty = (standing.failures >= FAILURES_TO_PENALTY).then(|| {
            standing.penalized_until = Some(now + penalty);
            penalty
        });
        self.stalled.push(Stalled {
            pair,
            origin,
            id,
            cause,
            penalty,
        });
    }
}

impl PairState {
    /// Notes a round of `origin` heard at `now`: the first since the verified value starts its
    /// progress timeout.
    fn hear(
        &mut self,
        origin: Address,
        id: Option<u64>,
        price: UsdPrice,
        now: Instant,
    ) -> &mut Heard {
        let index = match self.heard.iter().position(|heard| heard.origin == origin) {
            Some(index) => index,
            None => {
                self.heard.push(Heard {
                    origin,
                    id,
                    price,
                    at: now,
                    since: now,
                    failed: false,
                });
                self.heard.len() - 1
            }
        };
        let heard = &mut self.heard[index];
        heard.id = id;
        heard.price = price;
        heard.at = now;
        heard
    }

    /// Why a round is due by this observation, if it is.
    fn due_reason(
        &mut self,
        ours: UsdPrice,
        wall: u64,
        settings: &TriggerSettings,
    ) -> Option<Reason> {
        let Some(verified) = self.verified else {
            return Some(Reason::Heartbeat);
        };
        let apart = ours.relative_deviation(verified.value) >= settings.deviation;
        if !apart {
            self.anchor = None;
        }
        let moved_on = self
            .anchor
            .is_none_or(|anchor| ours.relative_deviation(anchor) >= settings.deviation);
        let heartbeat_at = verified
            .observed_at
            .saturating_add(settings.heartbeat.as_secs())
            .saturating_sub(settings.observe_interval.as_secs());
        if apart && moved_on {
            Some(Reason::Deviation)
        } else if wall >= heartbeat_at {
            Some(Reason::Heartbeat)
        } else {
            None
        }
    }

    /// Whether a round this node would join is under way: heard within the round window, its
    /// origin's price near our view, still making progress, and its origin (unless it is us)
    /// not penalized.
    fn joinable_round(
        &self,
        ours: UsdPrice,
        now: Instant,
        settings: &TriggerSettings,
        me: Address,
        penalized: impl Fn(&Address) -> bool,
    ) -> bool {
        self.heard.iter().any(|heard| {
            !heard.failed
                && (heard.origin == me || !penalized(&heard.origin))
                && now.saturating_duration_since(heard.at) <= ROUND_WINDOW
                && heard.price.relative_deviation(ours) <= settings.max_deviation
        })
    }
}

/// How long the member ranked `rank` lets those ahead of it start: nothing for the first;
/// `rank` observe intervals and a half for the others, so that each member ahead has observed
/// at least once (and its round has reached us) before this one's turn.
pub fn start_wait(rank: usize, observe_interval: Duration) -> Duration {
    if rank == 0 {
        return Duration::ZERO;
    }
    let intervals = u32::try_from(rank).unwrap_or(u32::MAX);
    observe_interval
        .saturating_mul(intervals)
        .saturating_add(observe_interval / 2)
}

/// The member's score for starting the next round of `pair` after round `last_id`: lower goes
/// first. `keccak256(keccak256(pair) ‖ be8(last_id) ‖ address)`.
pub fn score(pair: Pair, last_id: u64, member: &Address) -> B256 {
    let mut input = [0u8; 60];
    input[..32].copy_from_slice(pair.hash().as_slice());
    input[32..40].copy_from_slice(&last_id.to_be_bytes());
    input[40..].copy_from_slice(member.as_slice());
    keccak256(input)
}

/// `me`'s place among the members who may start the next round of `pair` after round `last_id`
/// (0 = first), or `None` when `me` does not count at `wall`. Without a member list (a node that
/// checks no membership) everyone is first.
pub fn starter_rank(
    pair: Pair,
    last_id: u64,
    me: &Address,
    members: &Members,
    wall: u64,
) -> Option<usize> {
    ranked(pair, last_id, me, members, wall, |_| false)
}

/// [`starter_rank`], with the members `penalized` ranked after every other (among themselves,
/// by score).
fn ranked(
    pair: Pair,
    last_id: u64,
    me: &Address,
    members: &Members,
    wall: u64,
    penalized: impl Fn(&Address) -> bool,
) -> Option<usize> {
    let Some(list) = members.counting_at(wall) else {
        return Some(0);
    };
    if !list.contains(me) {
        return None;
    }
    let key = |member: &Address| (penalized(member), score(pair, last_id, member), *member);
    let mine = key(me);
    Some(
        list.iter()
            .filter(|member| *member != me && key(member) < mine)
            .count(),
    )
}

/// The whole starting order of the next round of `pair` after round `last_id`.
pub fn starter_ranking(pair: Pair, last_id: u64, members: &[Address]) -> Vec<Address> {
    crate::committee::by_score(
        members
            .iter()
            .map(|member| (score(pair, last_id, member), *member)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::LazyLock;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(15);
    const WALL: u64 = 1_800_000_000;
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);

    fn usd(text: &str) -> UsdPrice {
        UsdPrice::parse_quote(text).unwrap()
    }

    /// `seconds` after the test's start, on the monotonic clock.
    fn at(seconds: u64) -> Instant {
        *START + Duration::from_secs(seconds)
    }

    fn settings() -> TriggerSettings {
        TriggerSettings {
            observe_interval: INTERVAL,
            deviation: Decimal::new(5, 3),
            heartbeat: Duration::from_secs(600),
            max_deviation: Decimal::new(1, 2),
            progress_timeout: 2 * INTERVAL,
        }
    }

    /// The origin of the values the tests verify: none of the members.
    const VALUE_ORIGIN: Address = Address::repeat_byte(0x77);

    fn addresses(n: u8) -> Vec<Address> {
        (1..=n).map(Address::repeat_byte).collect()
    }

    fn listed(list: &[Address]) -> Members {
        Members::for_relay(Some(list.iter().copied().collect::<HashSet<_>>()))
    }

    /// A value verified in round `id`, observed at `seconds` into the test.
    fn value(id: u64, seconds: u64, price: &str) -> Verified {
        Verified {
            id,
            origin: VALUE_ORIGIN,
            observed_at: WALL + seconds,
            value: usd(price),
        }
    }

    /// One member of a five-member network, its value of ETH/USD verified in round 7 at 0 s.
    struct Member {
        triggers: Triggers,
        members: Members,
    }

    impl Member {
        /// The member ranked `rank` to start the round after round 7.
        fn ranked(rank: usize) -> Self {
            Self::new(starter_ranking(Pair::EthUsd, 7, &addresses(5))[rank])
        }

        fn new(me: Address) -> Self {
            let mut triggers = Triggers::new(settings(), me);
            triggers.verified(Pair::EthUsd, value(7, 0, "3000"), at(0));
            Self {
                triggers,
                members: listed(&addresses(5)),
            }
        }

        /// Hears `origin`'s round `id` at `price`, `seconds` into the test.
        fn hear(&mut self, id: u64, origin: Address, price: &str, seconds: u64) {
            self.triggers
                .heard(Pair::EthUsd, id, origin, usd(price), at(seconds));
        }

        /// A round of `origin` verified at `seconds`, observed then.
        fn verify(&mut self, id: u64, origin: Address, price: &str, seconds: u64) {
            let verified = Verified {
                origin,
                ..value(id, seconds, price)
            };
            self.triggers.verified(Pair::EthUsd, verified, at(seconds));
        }

        /// Observes `price` at `seconds` into the test.
        fn observe(&mut self, price: &str, seconds: u64) -> Decision {
            let members = &self.members;
            self.triggers.observed(
                Pair::EthUsd,
                usd(price),
                at(seconds),
                WALL + seconds,
                members,
                false,
            )
        }
    }

    #[test]
    fn a_flat_market_starts_nothing_until_the_heartbeat() {
        let mut first = Member::ranked(0);
        assert_eq!(first.observe("3014.99", 10), Decision::Quiet);
        // Due one observe interval before the heartbeat ends.
        assert_eq!(first.observe("3000", 584), Decision::Quiet);
        assert_eq!(
            first.observe("3000", 585),
            Decision::Start(Reason::Heartbeat)
        );
    }

    #[test]
    fn a_move_starts_at_the_first_ranked_member_at_once_and_the_others_later() {
        let mut first = Member::ranked(0);
        assert_eq!(
            first.observe("3015", 20),
            Decision::Start(Reason::Deviation)
        );
        let mut third = Member::ranked(2);
        let wait = start_wait(2, INTERVAL);
        assert_eq!(wait, Duration::from_millis(37_500));
        let until = at(20) + wait;
        assert_eq!(third.observe("2985", 20), Decision::Wait { rank: 2, until });
        // Its turn counts from its first observation of the move, not from later ones.
        assert_eq!(third.observe("2985", 35), Decision::Wait { rank: 2, until });
        assert_eq!(third.observe("2985", 50), Decision::Wait { rank: 2, until });
        assert_eq!(
            third.observe("2985", 65),
            Decision::Start(Reason::Deviation)
        );
        // A move that ends before the turn comes resets it.
        let mut second = Member::ranked(1);
        assert!(matches!(second.observe("3016", 20), Decision::Wait { .. }));
        assert_eq!(second.observe("3010", 35), Decision::Quiet);
        assert_eq!(
            second.observe("3016", 50),
            Decision::Wait {
                rank: 1,
                until: at(50) + start_wait(1, INTERVAL)
            }
        );
    }

    #[test]
    fn a_round_heard_in_time_stands_for_the_move_unless_we_would_not_join_it() {
        let mut second = Member::ranked(1);
        assert!(matches!(
            second.observe("3060", 20),
            Decision::Wait { rank: 1, .. }
        ));
        // A liar's round, far from our view: not ours to trust with the move.
        second.hear(8, Address::repeat_byte(1), "1500", 21);
        assert_eq!(
            second.observe("3060", 43),
            Decision::Start(Reason::Deviation)
        );
        // The first member's round, near our view: covered while it runs.
        let mut third = Member::ranked(2);
        let first = Member::ranked(0).triggers.me;
        third.hear(9, first, "3058", 20);
        assert_eq!(third.observe("3060", 20), Decision::Covered);
        assert_eq!(third.observe("3060", 50), Decision::Covered);
        // A round that never verified ends with the progress timeout: the move is due again.
        assert!(matches!(
            third.observe("3060", 51),
            Decision::Wait { rank: 2, .. }
        ));
        // Verified: the move is done, and the rounds heard before no longer count.
        third.verify(9, first, "3059", 52);
        assert_eq!(third.observe("3060", 52), Decision::Quiet);
        // A round heard late, older than the value, is not one under way.
        third.hear(8, first, "3100", 53);
        assert!(matches!(
            third.observe("3100", 54),
            Decision::Wait { .. } | Decision::Start(_)
        ));
    }

    /// The member ranked `rank` after round `id` (of five).
    fn ranked_after(id: u64, rank: usize) -> Address {
        starter_ranking(Pair::EthUsd, id, &addresses(5))[rank]
    }

    #[test]
    fn a_round_that_makes_no_progress_stands_for_the_move_only_until_the_progress_timeout() {
        // The first-ranked member publishes a near-market round every 20 s that never
        // verifies (nobody can sign it); the second-ranked one sees the market move at 20 s.
        let staller = ranked_after(7, 0);
        let mut second = Member::ranked(1);
        second.hear(8, staller, "3058", 20);
        assert_eq!(second.observe("3060", 20), Decision::Covered);
        second.hear(9, staller, "3059", 40);
        assert_eq!(second.observe("3060", 50), Decision::Covered);
        // Its rounds stand for the move for the progress timeout from the first of them, not
        // from the newest: past it the move is due again, and the next-ranked member's turn
        // comes after its usual wait.
        assert_eq!(
            second.observe("3060", 51),
            Decision::Wait {
                rank: 1,
                until: at(51) + start_wait(1, INTERVAL)
            }
        );
        assert_eq!(
            second.triggers.take_stalled(),
            vec![Stalled {
                pair: Pair::EthUsd,
                origin: staller,
                id: Some(9),
                cause: StallCause::Timeout,
                penalty: None,
            }]
        );
        // Its later rounds stand for nothing until a value is verified.
        second.hear(10, staller, "3060", 60);
        assert!(matches!(second.observe("3060", 66), Decision::Wait { .. }));
        assert_eq!(
            second.observe("3060", 74),
            Decision::Start(Reason::Deviation)
        );
        // One failure is not yet a pattern: its rank is its own.
        assert!(!second.triggers.penalized(&staller, at(74)));
    }

    #[test]
    fn a_member_whose_rounds_keep_failing_loses_its_turn_for_a_while() {
        // The staller is first to start after value 9, the member second.
        let staller = ranked_after(9, 0);
        let mut member = Member::new(ranked_after(9, 1));
        // A first failed round, under value 7.
        member.hear(8, staller, "3000", 10);
        member.observe("3000", 41);
        let failed = member.triggers.take_stalled();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].penalty, None);
        // Another member's round is verified.
        member.verify(9, VALUE_ORIGIN, "3000", 50);
        member.hear(10, staller, "3060", 60);
        assert_eq!(member.observe("3060", 60), Decision::Covered);
        // Its second failure in a row: it loses its turn for ten progress timeouts, and the
        // member ranked second after it starts at once, first now.
        let penalty = settings().penalty();
        assert_eq!(penalty, Duration::from_secs(300));
        assert_eq!(
            member.observe("3060", 91),
            Decision::Start(Reason::Deviation)
        );
        let failed = member.triggers.take_stalled();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].penalty, Some(penalty));
        assert!(member.triggers.penalized(&staller, at(91)));
        assert!(!member.triggers.penalized(&staller, at(91) + penalty));
        // While penalized, its rounds stand for nothing, and it is ranked after every member.
        member.verify(11, VALUE_ORIGIN, "3060", 100);
        let last_id = 11;
        let my_rank = starter_ranking(Pair::EthUsd, last_id, &addresses(5))
            .iter()
            .filter(|other| **other != staller)
            .position(|other| *other == member.triggers.me)
            .unwrap();
        member.hear(12, staller, "3100", 110);
        let decision = member.observe("3100", 110);
        assert!(
            decision == Decision::Start(Reason::Deviation)
                || decision
                    == Decision::Wait {
                        rank: my_rank,
                        until: at(110) + start_wait(my_rank, INTERVAL)
                    },
            "{decision:?}"
        );
        // That round fails too, and starts its penalty again: a member that goes on
        // publishing rounds nobody verifies stays last.
        member.observe("3100", 141);
        let penalty_of_staller = |member: &mut Member| {
            let stalled = member.triggers.take_stalled();
            let theirs: Vec<_> = stalled.iter().filter(|s| s.origin == staller).collect();
            assert_eq!(theirs.len(), 1, "{stalled:?}");
            theirs[0].penalty
        };
        assert_eq!(penalty_of_staller(&mut member), Some(penalty));
        // Its penalty over, its rounds stand for a move again…
        let over = 141 + penalty.as_secs();
        assert!(member.triggers.penalized(&staller, at(over - 1)));
        member.verify(13, VALUE_ORIGIN, "3100", over - 10);
        member.hear(14, staller, "3150", over);
        assert_eq!(member.observe("3150", over), Decision::Covered);
        // …but the row of failures stands: one more failure, and the penalty starts again.
        member.observe("3150", over + 31);
        assert_eq!(penalty_of_staller(&mut member), Some(penalty));
        assert!(member.triggers.penalized(&staller, at(over + 31)));
        // A round of its own verified ends the row (not the penalty): the next failure is its
        // first again.
        member.verify(15, staller, "3150", over + 40);
        assert!(member.triggers.penalized(&staller, at(over + 40)));
        member.hear(16, staller, "3150", over + 50);
        member.observe("3150", over + 81);
        assert_eq!(penalty_of_staller(&mut member), None);
    }

    #[test]
    fn an_origin_that_equivocates_ends_its_round_at_once() {
        let staller = ranked_after(7, 0);
        let mut second = Member::ranked(1);
        second.hear(8, staller, "3058", 20);
        assert_eq!(second.observe("3060", 20), Decision::Covered);
        // The pool holds two different observations of the origin for its own round.
        let equivocate = |member: &mut Member, id: u64, seconds: u64| {
            member
                .triggers
                .equivocated(Pair::EthUsd, id, staller, usd("3059"), at(seconds));
        };
        equivocate(&mut second, 8, 21);
        assert!(matches!(
            second.observe("3060", 21),
            Decision::Wait { rank: 1, .. }
        ));
        // Every further message of the same round is the same failure.
        equivocate(&mut second, 8, 22);
        let failed = second.triggers.take_stalled();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].cause, StallCause::Equivocation);
        assert_eq!(failed[0].penalty, None);
        // A second equivocating round is a second failure, whatever the episode.
        equivocate(&mut second, 9, 30);
        assert_eq!(
            second.triggers.take_stalled()[0].penalty,
            Some(settings().penalty())
        );
        assert!(second.triggers.penalized(&staller, at(30)));
    }

    #[test]
    fn a_member_apart_from_the_network_starts_once_per_move_of_its_own_view() {
        let mut liar = Member::ranked(0);
        assert_eq!(liar.observe("1500", 15), Decision::Start(Reason::Deviation));
        // Nobody joined; its view has not moved: nothing until it moves or the heartbeat.
        for seconds in [30, 46, 60, 300] {
            assert_eq!(liar.observe("1500", seconds), Decision::Quiet);
            assert_eq!(liar.observe("1506", seconds), Decision::Quiet);
        }
        assert_eq!(
            liar.observe("1510", 310),
            Decision::Start(Reason::Deviation)
        );
        assert_eq!(liar.observe("1510", 341), Decision::Quiet);
        // Neither of its rounds verified within the progress timeout: it failed twice in a
        // row, and lets every other member start the heartbeat round first.
        let penalized = liar.triggers.take_stalled();
        assert_eq!(penalized.len(), 2);
        assert_eq!(penalized[1].penalty, Some(settings().penalty()));
        assert_eq!(
            liar.observe("1510", 585),
            Decision::Wait {
                rank: 4,
                until: at(585) + start_wait(4, INTERVAL)
            }
        );
        // The others' heartbeat round verifies; back near the network's value, and its penalty
        // over, it is an ordinary member again.
        liar.triggers
            .verified(Pair::EthUsd, value(8, 586, "3000"), at(590));
        assert_eq!(liar.observe("1510", 620), Decision::Quiet);
        assert_eq!(liar.observe("3001", 635), Decision::Quiet);
        assert!(matches!(
            liar.observe("3016", 650),
            Decision::Start(Reason::Deviation) | Decision::Wait { .. }
        ));
    }

    #[test]
    fn an_honest_member_whose_round_verified_follows_the_next_move() {
        let mut first = Member::ranked(0);
        let me = first.triggers.me;
        assert_eq!(
            first.observe("3060", 15),
            Decision::Start(Reason::Deviation)
        );
        first
            .triggers
            .verified(Pair::EthUsd, value(8, 15, "3059"), at(15));
        // Its view agrees with the new value: no longer apart, it follows the market.
        assert_eq!(first.observe("3061", 30), Decision::Quiet);
        // 0.52 % from the value, though only 0.49 % from the view it last started from.
        let rank = starter_ranking(Pair::EthUsd, 8, &addresses(5))
            .iter()
            .position(|member| *member == me)
            .unwrap();
        let expected = if rank == 0 {
            Decision::Start(Reason::Deviation)
        } else {
            Decision::Wait {
                rank,
                until: at(45) + start_wait(rank, INTERVAL),
            }
        };
        assert_eq!(first.observe("3075", 45), expected);
    }

    #[test]
    fn requested_rounds_start_at_once_and_outsiders_never_start() {
        let mut last = Member::ranked(4);
        let members = listed(&addresses(5));
        assert_eq!(
            last.triggers
                .observed(Pair::EthUsd, usd("3000"), at(1), WALL + 1, &members, true),
            Decision::Start(Reason::Requested)
        );
        let mut outsider = Member::new(Address::repeat_byte(0xee));
        assert_eq!(outsider.observe("3100", 1), Decision::Quiet);
        // No value yet (a new network): a heartbeat round, the first-ranked member first.
        let first = starter_ranking(Pair::EthUsd, 0, &addresses(5))[0];
        let mut fresh = Triggers::new(settings(), first);
        assert_eq!(
            fresh.observed(Pair::EthUsd, usd("3000"), at(0), WALL, &members, false),
            Decision::Start(Reason::Heartbeat)
        );
        // Without a member list, everyone is first.
        let mut open = Triggers::new(settings(), Address::repeat_byte(0xee));
        assert_eq!(
            open.observed(
                Pair::EthUsd,
                usd("3000"),
                at(0),
                WALL,
                &Members::open(),
                false
            ),
            Decision::Start(Reason::Heartbeat)
        );
    }

    #[test]
    fn older_values_do_not_replace_newer_ones() {
        let mut member = Member::ranked(0);
        member
            .triggers
            .verified(Pair::EthUsd, value(6, 0, "2000"), at(0));
        member.triggers.verified(
            Pair::EthUsd,
            Verified {
                observed_at: WALL - 1,
                ..value(9, 0, "2000")
            },
            at(0),
        );
        assert_eq!(
            member.triggers.verified_value(Pair::EthUsd),
            Some(value(7, 0, "3000"))
        );
    }

    #[test]
    fn the_ranking_is_a_permutation_that_changes_with_the_round() {
        let list = addresses(25);
        let after_7 = starter_ranking(Pair::EthUsd, 7, &list);
        let after_8 = starter_ranking(Pair::EthUsd, 8, &list);
        assert_eq!(after_7.len(), 25);
        assert_ne!(after_7, after_8);
        assert_ne!(after_7, starter_ranking(Pair::BtcUsd, 7, &list));
        let members = listed(&list);
        for (rank, member) in after_7.iter().enumerate() {
            assert_eq!(
                starter_rank(Pair::EthUsd, 7, member, &members, WALL),
                Some(rank)
            );
        }
    }
}
