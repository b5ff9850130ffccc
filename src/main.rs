//! `oracle`: parse the command line, start logging, run the subcommand, report its error once.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use price_oracle::commands;
use price_oracle::config::{self, Cli, Command};
use price_oracle::logging::{self, LogSettings};

// Two workers whatever the machine: a node's work is a few messages a second, and each worker
// costs a thread, its stack and its allocator arena (tokio would start one per core).
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    // Parsed in two steps to keep the matches: they tell where each value came from.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let node = match &cli.command {
        Command::Keygen(args) => args.name.clone(),
        Command::Run(args) => Some(args.key.name.clone()),
        Command::Bootstrap(args) => Some(args.key.name.clone()),
        Command::MockExchange(_) => Some("mock-exchange".to_owned()),
        Command::Price(_)
        | Command::Migrate(_)
        | Command::DbRole(_)
        | Command::Verify(_)
        | Command::Status(_)
        | Command::Signers(_)
        | Command::Prices(_) => None,
    };
    let log_settings = LogSettings {
        filter: cli.log.log_level.clone(),
        format: cli.log.log_format,
        file: cli.log.log_file.clone(),
        node,
    };
    if let Err(err) = logging::init(&log_settings) {
        eprintln!("error: {}", logging::one_line(err.as_ref()));
        return ExitCode::FAILURE;
    }
    if config::database_password_on_command_line(&matches) {
        log::warn!("{}", config::DATABASE_PASSWORD_WARNING);
    }
    let result = match &cli.command {
        Command::Keygen(args) => commands::keygen(args),
        Command::Price(args) => commands::price(args).await,
        Command::MockExchange(args) => commands::mock_exchange(args).await,
        Command::Migrate(args) => commands::migrate(args).await,
        Command::DbRole(args) => commands::db_role(args).await,
        Command::Run(args) => commands::run(args).await,
        Command::Bootstrap(args) => commands::bootstrap(args).await,
        Command::Verify(args) => commands::verify(args).await,
        Command::Status(args) => commands::status(args).await,
        Command::Signers(command) => commands::signers(command).await,
        Command::Prices(command) => commands::prices(command).await,
    };
    result.unwrap_or_else(|err| {
        log::error!("{}", logging::one_line(err.as_ref()));
        ExitCode::FAILURE
    })
}
