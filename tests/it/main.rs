//! The integration tests, in one binary: each file in `tests/` used to be a binary of its own,
//! every one linking the whole crate with libp2p, sea-orm, alloy and revm again. One module per
//! theme; `common` holds what several share. cargo-nextest still runs every test in a process of
//! its own (`.config/nextest.toml` says how many at once), so a test that sets process-wide state
//! (the logger in `logging`) sees only its own.

mod api;
mod bench;
mod cli;
mod cluster;
mod common;
mod deployment;
mod evm;
mod kubernetes;
mod logging;
mod monitoring;
mod price_sources;
mod psk;
mod replicated;
mod roles;
mod rounds;
mod settings;
mod store;
