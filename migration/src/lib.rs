//! sea-orm migrations of the price-oracle schema.
//!
//! Run them with `cargo run -p migration -- up` or `sea-orm-cli migrate up` (both read
//! `DATABASE_URL`), or let a node run them at start (`oracle run --migrate`, the default), which
//! serializes concurrent starts with an advisory lock.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_create_prices;
mod m20261121_000002_create_heartbeat;
mod m20261123_000003_create_signers;
mod m20261123_000004_prices_commit_order;
mod m20261123_000005_heartbeat_addrs_and_terms;
mod m20261130_000006_prices_notify;
mod m20261130_000007_prices_read_indexes;
mod m20261204_000008_prices_observations;
mod m20261207_000009_prices_config;
mod m20261207_000010_prices_commits;
mod m20261207_000011_node_roles;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_prices::Migration),
            Box::new(m20261121_000002_create_heartbeat::Migration),
            Box::new(m20261123_000003_create_signers::Migration),
            Box::new(m20261123_000004_prices_commit_order::Migration),
            Box::new(m20261123_000005_heartbeat_addrs_and_terms::Migration),
            Box::new(m20261130_000006_prices_notify::Migration),
            Box::new(m20261130_000007_prices_read_indexes::Migration),
            Box::new(m20261204_000008_prices_observations::Migration),
            Box::new(m20261207_000009_prices_config::Migration),
            Box::new(m20261207_000010_prices_commits::Migration),
            Box::new(m20261207_000011_node_roles::Migration),
        ]
    }
}
