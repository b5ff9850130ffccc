//! The writer's duties, as the node sees them: the lease as of the last heartbeat, when to
//! flush, and whose stored notices to believe. Every heartbeat arrives here as an event; nothing
//! here reads the database or the clock.

use std::collections::VecDeque;

use crate::store::StoreError;
use crate::store::lease::LeaseState;
use crate::store::prices::FlushOutcome;

/// How many recent writers' stored notices are believed.
const RECENT_WRITERS: usize = 8;

#[derive(Debug, Default)]
pub struct WriterDuties {
    lease: LeaseState,
    /// A flush found another writer since the last heartbeat: no flush until the next one,
    /// rather than a refused transaction on every flush tick.
    refuted: bool,
    flush_in_flight: bool,
    /// Writers seen by our heartbeats, newest last.
    recent_writers: VecDeque<String>,
}

impl WriterDuties {
    /// A heartbeat's view, successful or not. It outranks what an earlier refused flush said.
    pub fn on_heartbeat(&mut self, state: LeaseState) {
        self.refuted = false;
        if let Some(writer) = &state.writer
            && self.recent_writers.back() != Some(writer)
        {
            self.recent_writers.retain(|known| known != writer);
            self.recent_writers.push_back(writer.clone());
            if self.recent_writers.len() > RECENT_WRITERS {
                self.recent_writers.pop_front();
            }
        }
        self.lease = state;
    }

    pub fn lease(&self) -> &LeaseState {
        &self.lease
    }

    /// Whether to start a flush now (if anything is due).
    pub fn may_flush(&self) -> bool {
        self.lease.is_writer && !self.refuted && !self.flush_in_flight
    }

    pub fn flush_started(&mut self) {
        self.flush_in_flight = true;
    }

    pub fn flush_in_flight(&self) -> bool {
        self.flush_in_flight
    }

    pub fn flush_finished(&mut self, outcome: &Result<FlushOutcome, StoreError>) {
        self.flush_in_flight = false;
        if let Ok(FlushOutcome::NotWriter { .. }) = outcome {
            self.refuted = true;
        }
    }

    /// Stored notices are believed from writers our heartbeats have seen only.
    pub fn believes(&self, writer: &str) -> bool {
        self.recent_writers.iter().any(|known| known == writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(name: &str, is_writer: bool, beats: u64) -> LeaseState {
        LeaseState {
            is_writer,
            writer: Some(name.to_owned()),
            healthy: true,
            beats,
        }
    }

    #[test]
    fn a_refused_flush_waits_for_the_next_heartbeat_even_one_that_changes_nothing() {
        let mut duties = WriterDuties::default();
        duties.on_heartbeat(writer("me", true, 1));
        assert!(duties.may_flush());
        duties.flush_started();
        assert!(!duties.may_flush());
        duties.flush_finished(&Ok(FlushOutcome::NotWriter {
            writer: Some("other".into()),
        }));
        assert!(!duties.may_flush());
        // The same view as before: still news, since it is a newer heartbeat.
        duties.on_heartbeat(writer("me", true, 2));
        assert!(duties.may_flush());
    }

    #[test]
    fn only_writers_seen_by_heartbeats_are_believed_and_only_the_recent_ones() {
        let mut duties = WriterDuties::default();
        assert!(!duties.believes("a"));
        for (beat, name) in ["a", "b"].into_iter().enumerate() {
            duties.on_heartbeat(writer(name, false, beat as u64));
        }
        assert!(duties.believes("a") && duties.believes("b"));
        for beat in 0..RECENT_WRITERS {
            duties.on_heartbeat(writer(&format!("w{beat}"), false, 10 + beat as u64));
        }
        assert!(!duties.believes("a"));
        assert!(duties.believes("w0"));
    }
}
