//! Sonyflake-style price ids: unique across nodes, sortable by creation time, and a positive
//! `BIGINT`.
//!
//! ```text
//!  63 | 62 ............ 24 | 23 ..... 16 | 15 ......... 0
//!   0 | time (39 bits)     | seq (8 bits)| machine (16 bits)
//! ```
//!
//! - time: 10 ms units since [`EPOCH_UNIX_MS`] (2025-01-01T00:00:00Z); 39 bits last ~174 years.
//! - seq: 256 ids per 10 ms per machine.
//! - machine: the low 16 bits of the node's address. It comes with the key, not a flag, so that
//!   nobody can mint ids in another node's space: validation refuses an id whose machine bits
//!   are not its origin's. Two nodes whose addresses share those 16 bits can mint the same id in
//!   the same 10 ms with the same sequence number; with N nodes the chance that any two share
//!   them is about N²/131 072 (≈ 2 % for 50 nodes). A collision is never silent — the flush
//!   refuses a second price under a stored id and logs it — and the cure is a new key for one
//!   of the two nodes (`oracle keygen` shows the address; compare the last four hex digits).
//!
//! Unlike Sonyflake the generator never sleeps: when 256 ids are used up within one tick, or
//! the wall clock steps backwards, it moves its own logical clock one tick ahead of the last id.
//! Ids stay strictly increasing; they may run slightly ahead of the wall clock under bursts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;

/// 2025-01-01T00:00:00Z in Unix milliseconds.
pub const EPOCH_UNIX_MS: u64 = 1_735_689_600_000;

const TICK_MS: u64 = 10;
const TIME_BITS: u32 = 39;
const SEQUENCE_BITS: u32 = 8;
const MACHINE_BITS: u32 = 16;
const MAX_TICK: u64 = (1 << TIME_BITS) - 1;
const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;

/// The id cannot be formed from the current time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("system clock reads before the id epoch (2025-01-01); fix the clock")]
    BeforeEpoch,
    #[error("the 39-bit id time range is exhausted")]
    TimeExhausted,
}

/// The parts of an id, for logs and debugging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdParts {
    /// Unix milliseconds of the id's tick.
    pub unix_ms: u64,
    pub sequence: u8,
    pub machine: u16,
}

/// Mints ids for one machine id. Not shared between tasks: each node owns one.
#[derive(Debug)]
pub struct IdGenerator {
    machine: u16,
    last_tick: Option<u64>,
    sequence: u16,
}

impl IdGenerator {
    pub fn new(machine: u16) -> Self {
        Self {
            machine,
            last_tick: None,
            sequence: 0,
        }
    }

    /// The default machine id for a node: the low 16 bits of its address.
    pub fn machine_id_from_address(address: &Address) -> u16 {
        let bytes = address.as_slice();
        u16::from_be_bytes([bytes[18], bytes[19]])
    }

    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// The next id at the current wall-clock time.
    pub fn next_id(&mut self) -> Result<u64, IdError> {
        self.next_id_at(SystemTime::now())
    }

    /// The next id as if the clock read `now` (the generator's logic, testable).
    pub fn next_id_at(&mut self, now: SystemTime) -> Result<u64, IdError> {
        let wall_tick = tick_of(now)?;
        let (tick, sequence) = match self.last_tick {
            Some(last) if wall_tick <= last => {
                // Same tick, or the clock stepped back: continue on our own clock.
                if self.sequence < MAX_SEQUENCE {
                    (last, self.sequence + 1)
                } else {
                    (last + 1, 0)
                }
            }
            _ => (wall_tick, 0),
        };
        if tick > MAX_TICK {
            return Err(IdError::TimeExhausted);
        }
        self.last_tick = Some(tick);
        self.sequence = sequence;
        Ok((tick << (SEQUENCE_BITS + MACHINE_BITS))
            | (u64::from(sequence) << MACHINE_BITS)
            | u64::from(self.machine))
    }
}

/// Splits an id into its parts.
pub fn decompose(id: u64) -> IdParts {
    IdParts {
        unix_ms: EPOCH_UNIX_MS + (id >> (SEQUENCE_BITS + MACHINE_BITS)) * TICK_MS,
        sequence: ((id >> MACHINE_BITS) & u64::from(MAX_SEQUENCE)) as u8,
        machine: (id & 0xffff) as u16,
    }
}

fn tick_of(now: SystemTime) -> Result<u64, IdError> {
    let since_unix = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| IdError::BeforeEpoch)?;
    let since_epoch = since_unix
        .checked_sub(Duration::from_millis(EPOCH_UNIX_MS))
        .ok_or(IdError::BeforeEpoch)?;
    let tick = since_epoch.as_millis() / u128::from(TICK_MS);
    u64::try_from(tick)
        .ok()
        .filter(|tick| *tick <= MAX_TICK)
        .ok_or(IdError::TimeExhausted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(unix_ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(unix_ms)
    }

    const T0: u64 = 1_763_700_000_000;

    #[test]
    fn layout_round_trips() {
        let mut generator = IdGenerator::new(0xbeef);
        let id = generator.next_id_at(at_ms(T0 + 7)).unwrap();
        assert!(i64::try_from(id).is_ok(), "fits a positive BIGINT");
        assert_eq!(
            decompose(id),
            IdParts {
                unix_ms: T0,
                sequence: 0,
                machine: 0xbeef
            }
        );
        let next = generator.next_id_at(at_ms(T0 + 9)).unwrap();
        assert_eq!(decompose(next).sequence, 1);
    }

    #[test]
    fn strictly_increasing_through_sequence_overflow() {
        let mut generator = IdGenerator::new(1);
        let mut last = 0;
        for _ in 0..1_000 {
            let id = generator.next_id_at(at_ms(T0)).unwrap();
            assert!(id > last);
            last = id;
        }
        // 1 000 ids in one tick borrowed three ticks from the future, without sleeping.
        assert_eq!(decompose(last).unix_ms, T0 + 3 * TICK_MS);
        // When the wall clock catches up, it takes over again.
        let later = generator.next_id_at(at_ms(T0 + 1_000)).unwrap();
        assert_eq!(decompose(later).unix_ms, T0 + 1_000);
        assert_eq!(decompose(later).sequence, 0);
    }

    #[test]
    fn clock_going_backwards_neither_panics_nor_repeats() {
        let mut generator = IdGenerator::new(1);
        let first = generator.next_id_at(at_ms(T0 + 60_000)).unwrap();
        let second = generator.next_id_at(at_ms(T0)).unwrap();
        assert!(second > first);
        assert_eq!(decompose(second).unix_ms, T0 + 60_000);
    }

    #[test]
    fn refuses_times_outside_the_range() {
        let mut generator = IdGenerator::new(1);
        assert_eq!(
            generator.next_id_at(at_ms(EPOCH_UNIX_MS - 1)),
            Err(IdError::BeforeEpoch)
        );
        assert_eq!(
            generator.next_id_at(UNIX_EPOCH - Duration::from_secs(1)),
            Err(IdError::BeforeEpoch)
        );
        let end = EPOCH_UNIX_MS + (MAX_TICK + 1) * TICK_MS;
        assert_eq!(
            generator.next_id_at(at_ms(end)),
            Err(IdError::TimeExhausted)
        );
        let last = generator.next_id_at(at_ms(end - TICK_MS)).unwrap();
        assert!(i64::try_from(last).is_ok());
    }

    #[test]
    fn machine_ids_separate_generators_in_the_same_tick() {
        let a = IdGenerator::new(1).next_id_at(at_ms(T0)).unwrap();
        let b = IdGenerator::new(2).next_id_at(at_ms(T0)).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn machine_id_is_the_low_16_bits_of_the_address() {
        let address: Address = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
            .parse()
            .unwrap();
        assert_eq!(IdGenerator::machine_id_from_address(&address), 0x5c23);
    }
}
