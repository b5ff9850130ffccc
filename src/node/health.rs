//! What `/health` reports: every rule a node can check about itself, each with a reason a
//! person can act on. A node is healthy when none applies.

use std::time::Duration;

use crate::network::RESPONSIVE_WINDOW;
use crate::store::DatabaseState;
/// Consecutive failed observations that make a node unhealthy: a minute of them at the
/// default `--observe-interval`, longer than an exchange's usual hiccup.
pub const FAILED_FETCHES: u32 = 4;

/// What the node knows about itself right now.
#[derive(Debug, Clone)]
pub struct Observations {
    pub connected_peers: usize,
    /// Connected peers that answered a ping within [`RESPONSIVE_WINDOW`].
    pub responsive_peers: usize,
    pub min_peers: usize,
    pub database: DatabaseState,
    /// Since the last heartbeat that reached the database (or since running, before the first).
    pub since_heartbeat: Option<Duration>,
    pub heartbeat_interval: Duration,
    /// Since the node started running (peers and database in place); `None` before.
    pub running_for: Option<Duration>,
    /// Since the last successful price fetch, if any.
    pub since_fetch: Option<Duration>,
    /// Fetches that failed in a row, the last one included.
    pub failed_fetches: u32,
    /// Since the last message received from the network, if any.
    pub since_gossip: Option<Duration>,
    /// How often the node observes (`--observe-interval`).
    pub observe_interval: Duration,
    /// How old a pair's value may get before a round starts however flat the market
    /// (`--heartbeat`): a network is at least this busy.
    pub heartbeat: Duration,
}

/// How long without something that should happen every `period` is too long: two missed
/// periods, plus a minute of slack. A fetch should happen every `--observe-interval`, a
/// message from the network at least every `--heartbeat`.
pub fn silence_bound(period: Duration) -> Duration {
    period * 2 + Duration::from_secs(60)
}

/// How long without a successful heartbeat means the database is unreachable: one heartbeat
/// interval, plus half of one (at least a second) for the statement itself.
pub fn heartbeat_bound(interval: Duration) -> Duration {
    interval + (interval / 2).max(Duration::from_secs(1))
}

/// Every rule that fails, in order of importance; empty when healthy.
pub fn problems(now: &Observations) -> Vec<String> {
    let mut problems = Vec::new();
    if now.connected_peers < now.min_peers {
        problems.push(format!(
            "connected to {} of {} required peers",
            now.connected_peers, now.min_peers
        ));
    } else if now.responsive_peers < now.min_peers {
        problems.push(format!(
            "only {} of {} connected peers answered a ping in the last {}s (a partition?)",
            now.responsive_peers,
            now.connected_peers,
            RESPONSIVE_WINDOW.as_secs()
        ));
    }
    match now.database {
        DatabaseState::NotConnected => problems.push("not connected to the database yet".into()),
        DatabaseState::Failing => problems.push("the last database call failed".into()),
        DatabaseState::Ok => {}
    }
    if let Some(since) = now.since_heartbeat
        && since > heartbeat_bound(now.heartbeat_interval)
        && now.database != DatabaseState::NotConnected
    {
        problems.push(format!(
            "no heartbeat reached the database for {}s",
            since.as_secs()
        ));
    }
    let Some(running_for) = now.running_for else {
        return problems;
    };
    let silence = silence_bound(now.observe_interval);
    if now.failed_fetches >= FAILED_FETCHES {
        problems.push(format!(
            "the last {} price fetches failed",
            now.failed_fetches
        ));
    } else if running_for > silence && now.since_fetch.is_none_or(|since| since > silence) {
        problems.push(format!(
            "no price fetched for more than {}s",
            silence.as_secs()
        ));
    }
    let quiet = silence_bound(now.heartbeat);
    if now.connected_peers > 0
        && running_for > quiet
        && now.since_gossip.is_none_or(|since| since > quiet)
    {
        problems.push(format!(
            "no message from the network for more than {}s although {} peers are connected",
            quiet.as_secs(),
            now.connected_peers
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observations {
        Observations {
            connected_peers: 4,
            responsive_peers: 4,
            min_peers: 3,
            database: DatabaseState::Ok,
            since_heartbeat: Some(Duration::from_secs(1)),
            heartbeat_interval: Duration::from_secs(5),
            running_for: Some(Duration::from_secs(3_600)),
            since_fetch: Some(Duration::from_secs(10)),
            failed_fetches: 0,
            since_gossip: Some(Duration::from_secs(5)),
            observe_interval: Duration::from_secs(15),
            heartbeat: Duration::from_secs(600),
        }
    }

    fn only_problem(observations: &Observations) -> String {
        let problems = problems(observations);
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems[0].clone()
    }

    #[test]
    fn a_working_node_is_healthy() {
        assert!(problems(&healthy()).is_empty());
    }

    #[test]
    fn too_few_peers_or_peers_that_do_not_answer() {
        let few = Observations {
            connected_peers: 2,
            responsive_peers: 2,
            ..healthy()
        };
        assert!(only_problem(&few).contains("2 of 3 required peers"));
        let partitioned = Observations {
            responsive_peers: 1,
            ..healthy()
        };
        assert!(only_problem(&partitioned).contains("answered a ping"));
    }

    #[test]
    fn a_database_that_stopped_answering_within_one_heartbeat_and_a_half() {
        let hanging = Observations {
            since_heartbeat: Some(Duration::from_secs(8)),
            ..healthy()
        };
        assert!(only_problem(&hanging).contains("no heartbeat reached the database for 8s"));
        let just_late = Observations {
            since_heartbeat: Some(Duration::from_secs(7)),
            ..healthy()
        };
        assert!(problems(&just_late).is_empty());
        let failing = Observations {
            database: DatabaseState::Failing,
            ..healthy()
        };
        assert!(only_problem(&failing).contains("database call failed"));
    }

    #[test]
    fn price_sources_that_keep_failing() {
        let failing = Observations {
            failed_fetches: 4,
            ..healthy()
        };
        assert!(only_problem(&failing).contains("last 4 price fetches failed"));
        let a_hiccup = Observations {
            failed_fetches: 3,
            ..healthy()
        };
        assert!(problems(&a_hiccup).is_empty());
        // Two missed observations and a minute: 90 s at 15 s.
        let long_ago = Observations {
            since_fetch: Some(Duration::from_secs(91)),
            ..healthy()
        };
        assert!(only_problem(&long_ago).contains("no price fetched for more than 90s"));
    }

    #[test]
    fn silence_from_a_mesh_that_looks_connected() {
        // A flat market's network speaks once per heartbeat: quiet minutes are normal.
        let flat = Observations {
            since_gossip: Some(Duration::from_secs(900)),
            ..healthy()
        };
        assert!(problems(&flat).is_empty());
        let silent = Observations {
            since_gossip: Some(Duration::from_secs(1_300)),
            ..healthy()
        };
        assert!(only_problem(&silent).contains("no message from the network for more than 1260s"));
        let just_started = Observations {
            running_for: Some(Duration::from_secs(30)),
            since_fetch: None,
            since_gossip: None,
            ..healthy()
        };
        assert!(problems(&just_started).is_empty());
    }
}
