//! The writer's duties as the node sees them: the lease as of the last heartbeat, whether a
//! flush may start, and whose stored notices to believe. Every heartbeat arrives here as an
//! event; nothing here reads the database or the clock.

use std::collections::VecDeque;

use alloy_primitives::Address;

use super::heartbeat::LeaseState;
use crate::store::StoreError;
use crate::store::prices::FlushOutcome;

/// How many recent writers' stored notices are believed.
const RECENT_WRITERS: usize = 8;

#[derive(Debug, Default)]
pub struct WriterDuties {
    lease: LeaseState,
    /// A flush found another writer since the last heartbeat: no flush until the next one,
    /// rather than a refused transaction on every flush tick.
    refuted: bool,
    /// Writers seen by our heartbeats, newest last.
    recent_writers: VecDeque<Address>,
}

impl WriterDuties {
    /// A heartbeat's view, successful or not. It outranks what an earlier refused flush said.
    pub fn on_heartbeat(&mut self, state: LeaseState) {
        self.refuted = false;
        if let Some(writer) = state.writer
            && self.recent_writers.back() != Some(&writer)
        {
            self.recent_writers.retain(|known| *known != writer);
            self.recent_writers.push_back(writer);
            if self.recent_writers.len() > RECENT_WRITERS {
                self.recent_writers.pop_front();
            }
        }
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

    /// Stored notices are believed from writers our heartbeats have seen only.
    pub fn believes(&self, writer: &Address) -> bool {
        self.recent_writers.contains(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_writers_seen_by_heartbeats_are_believed_and_only_the_recent_ones() {
        let mut duties = WriterDuties::default();
        let (a, b) = (Address::repeat_byte(0xa), Address::repeat_byte(0xb));
        assert!(!duties.believes(&a));
        duties.on_heartbeat(writer(0xa, false, 0));
        duties.on_heartbeat(writer(0xb, false, 1));
        assert!(duties.believes(&a) && duties.believes(&b));
        for beat in 0..RECENT_WRITERS as u8 {
            duties.on_heartbeat(writer(0x10 + beat, false, 10 + u64::from(beat)));
        }
        assert!(!duties.believes(&a));
        assert!(duties.believes(&Address::repeat_byte(0x10)));
    }
}
