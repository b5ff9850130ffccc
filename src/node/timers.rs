//! Small waits the event loop selects over: timers that may not exist, watches that may not
//! exist yet, tasks that may have ended.

use super::*;

/// The next value of a watch that may not exist yet; never resolves while there is none or
/// after its sender is gone.
pub(super) async fn next_value<T: Clone>(watch: &mut Option<watch::Receiver<T>>) -> T {
    match watch {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            receiver.borrow_and_update().clone()
        }
        None => std::future::pending().await,
    }
}

/// Resolves when the task ends (and forgets it); never while there is none.
pub(super) async fn ended(task: &mut Option<JoinHandle<()>>) {
    match task {
        Some(running) => {
            let _ = running.await;
            *task = None;
        }
        None => std::future::pending().await,
    }
}

/// Flushes are checked often enough that a due price waits at most half a second (and a fraction
/// of a short delay); a check is a scan of the pool in memory.
pub(super) fn flush_check_interval(flush_delay: Duration) -> Duration {
    (flush_delay / 4).clamp(Duration::from_millis(100), Duration::from_millis(500))
}

pub(super) fn interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// Resolves at `due` (callers guard on `Some`).
pub(super) async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Ticks an optional timer; never resolves while there is none.
pub(super) async fn tick(timer: &mut Option<Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

pub(super) fn age(at: std::time::SystemTime) -> Duration {
    std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default()
}
