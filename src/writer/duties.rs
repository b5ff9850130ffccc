//! The writer's duties as the node sees them: the lease as of the last heartbeat, and whether a
//! flush may start. Every heartbeat arrives here as an event; nothing here reads the database
//! or the clock.

use super::heartbeat::LeaseState;
use crate::store::StoreError;
use crate::store::prices::FlushOutcome;

#[derive(Debug, Default)]
pub struct WriterDuties {
    lease: LeaseState,
    /// A flush found another writer since the last heartbeat: no flush until the next one,
    /// rather than a refused transaction on every flush tick.
    refuted: bool,
}

impl WriterDuties {
    /// A heartbeat's view, successful or not. It outranks what an earlier refused flush said.
    pub fn on_heartbeat(&mut self, state: LeaseState) {
        self.refuted = false;
        self.lease = state;
    }

    pub fn lease(&self) -> &LeaseState {
        &self.lease
    }

    /// Whether a flush may start now (if anything is due and none is running).
    pub fn may_flush(&self) -> bool {
        self.lease.is_writer && !self.refuted
    }

    /// A flush ended: one that found another writer holds flushes until the next heartbeat.
    pub fn flush_finished(&mut self, outcome: &Result<FlushOutcome, StoreError>) {
        if let Ok(FlushOutcome::NotWriter { .. }) = outcome {
            self.refuted = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    fn writer(byte: u8, is_writer: bool, beats: u64) -> LeaseState {
        LeaseState {
            is_writer,
            writer: Some(Address::repeat_byte(byte)),
            healthy: true,
            beats,
        }
    }

    #[test]
    fn a_refused_flush_waits_for_the_next_heartbeat_even_one_that_changes_nothing() {
        let mut duties = WriterDuties::default();
        duties.on_heartbeat(writer(1, true, 1));
        assert!(duties.may_flush());
        duties.flush_finished(&Ok(FlushOutcome::NotWriter {
            writer: Some(Address::repeat_byte(2)),
        }));
        assert!(!duties.may_flush());
        // The same view as before: still news, since it is a newer heartbeat.
        duties.on_heartbeat(writer(1, true, 2));
        assert!(duties.may_flush());
    }
}
