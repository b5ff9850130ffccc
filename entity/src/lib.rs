//! sea-orm entities for the `prices` and `heartbeat` tables. The storage issue fills this crate.
