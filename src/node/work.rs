//! The node's background work. Everything slow — observing the market, a flush, connecting to
//! the database, looking up peers — runs as a task in one [`JoinSet`] and reports back as one
//! [`Done`] value, so the event loop never waits, "in flight" means "a task of that kind is in
//! the set", and a task that panics cannot leave a flag set for ever.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::Connected;
use super::origination::ObservationRound;
use crate::writer::{Flush, NoticeCheck};

/// The kinds of background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// Fetching every pair's price from the sources.
    Observe,
    /// Storing due prices (the writer only).
    Flush,
    /// Connecting (and migrating, and registering), retried until it works.
    Connect,
    /// Reading peers' addresses from the heartbeat table.
    FindPeers,
    /// Looking up the ids of stored notices in the database.
    CheckNotices,
}

/// What a finished task brings back.
#[derive(Debug)]
pub enum Done {
    Observed(ObservationRound),
    Flushed(Flush),
    // Boxed: a store is large, and arrives once.
    Connected(Box<Connected>),
    FoundPeers(Vec<String>),
    NoticesChecked(NoticeCheck),
    /// The task ended without a result: it panicked (logged here) or was cancelled.
    Nothing(Job),
}

/// The running tasks, each with its kind.
#[derive(Debug)]
pub struct Work {
    tasks: JoinSet<Option<Done>>,
    running: HashMap<Id, Job>,
    shutdown: CancellationToken,
}

impl Work {
    /// Work that `shutdown` cancels (but for flushes, which a stop waits for).
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            tasks: JoinSet::new(),
            running: HashMap::new(),
            shutdown,
        }
    }

    /// Runs `task` in the background; a stop cancels it.
    pub fn spawn(&mut self, job: Job, task: impl Future<Output = Done> + Send + 'static) {
        let cancelled = self.shutdown.clone();
        let handle = self
            .tasks
            .spawn(async move { cancelled.run_until_cancelled_owned(task).await });
        self.running.insert(handle.id(), job);
    }

    /// Runs `task` in the background to its end: a stop waits for it rather than cut it off.
    pub fn spawn_uncancelled(
        &mut self,
        job: Job,
        task: impl Future<Output = Done> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(async move { Some(task.await) });
        self.running.insert(handle.id(), job);
    }

    /// Whether a task of this kind is running.
    pub fn is_running(&self, job: Job) -> bool {
        self.running.values().any(|running| *running == job)
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next finished task's result; `None` once no task is left.
    pub async fn next(&mut self) -> Option<Done> {
        let joined = self.tasks.join_next_with_id().await?;
        let (id, done) = match joined {
            Ok((id, done)) => (id, done),
            Err(err) => {
                if err.is_panic() {
                    log::error!("a background task of the node panicked: {err}");
                }
                (err.id(), None)
            }
        };
        let job = self.running.remove(&id);
        Some(match (done, job) {
            (Some(done), _) => done,
            (None, Some(job)) => Done::Nothing(job),
            // Every task is registered at spawn; a stray one is treated as a cancelled fetch.
            (None, None) => Done::Nothing(Job::Observe),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_is_in_flight_until_its_result_is_taken_even_when_it_panics() {
        let shutdown = CancellationToken::new();
        let mut work = Work::new(shutdown.clone());
        work.spawn(Job::FindPeers, async { Done::FoundPeers(vec!["a".into()]) });
        assert!(work.is_running(Job::FindPeers));
        assert!(!work.is_running(Job::Flush));
        assert!(matches!(work.next().await, Some(Done::FoundPeers(addrs)) if addrs == ["a"]));
        assert!(!work.is_running(Job::FindPeers));

        work.spawn_uncancelled(Job::Flush, async { panic!("a flush went wrong") });
        assert!(matches!(work.next().await, Some(Done::Nothing(Job::Flush))));
        assert!(!work.is_running(Job::Flush));

        // A stop cancels what may be cut off and waits for what may not.
        work.spawn(Job::Connect, std::future::pending());
        work.spawn_uncancelled(Job::Flush, async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Done::FoundPeers(Vec::new())
        });
        shutdown.cancel();
        let mut results = Vec::new();
        while let Some(done) = work.next().await {
            results.push(done);
        }
        assert_eq!(results.len(), 2);
        assert!(
            results
                .iter()
                .any(|done| matches!(done, Done::Nothing(Job::Connect)))
        );
        assert!(
            results
                .iter()
                .any(|done| matches!(done, Done::FoundPeers(_)))
        );
        assert!(work.is_empty());
    }
}
