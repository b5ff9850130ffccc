//! Time as the node reads it: a [`Moment`] on both clocks, and unix seconds, the unit every
//! signed field is in. A leaf: it imports nothing of the crate.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whole seconds since the unix epoch; 0 for a time before it.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A moment on both clocks: the monotonic one times everything local (a wall-clock step must
/// not make prices due or expired), the wall clock dates what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Moment {
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Self;

    fn add(self, later: Duration) -> Self {
        Self {
            at: self.at + later,
            wall: self.wall + later,
        }
    }
}

impl std::ops::Sub<Duration> for Moment {
    type Output = Self;

    fn sub(self, earlier: Duration) -> Self {
        Self {
            at: self.at - earlier,
            wall: self.wall - earlier,
        }
    }
}
