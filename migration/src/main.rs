//! `cargo run -p migration -- up|down|status|fresh|…` (also what `sea-orm-cli migrate` runs).
//! The database comes from `DATABASE_URL` (or `-u URL`).

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli(migration::Migrator).await;
}
