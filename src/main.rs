//! `oracle`: parse the command line, start logging, run the subcommand, report its error once.

use std::process::ExitCode;

use clap::Parser;
use price_oracle::commands;
use price_oracle::config::{Cli, Command};
use price_oracle::logging::{self, LogSettings};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let node = match &cli.command {
        Command::Keygen(args) => Some(args.key.name.clone()),
        Command::Run(args) => Some(args.key.name.clone()),
        Command::Bootstrap(args) => Some(args.key.name.clone()),
        Command::MockExchange(_) => Some("mock-exchange".to_owned()),
        Command::Price(_) | Command::Migrate(_) | Command::Verify(_) | Command::Status(_) => None,
    };
    let log_settings = LogSettings {
        filter: cli.log.log_level.clone(),
        format: cli.log.log_format,
        file: cli.log.log_file.clone(),
        node,
    };
    if let Err(err) = logging::init(&log_settings) {
        eprintln!("error: {err:#}");
        return ExitCode::FAILURE;
    }
    let result = match &cli.command {
        Command::Keygen(args) => commands::keygen(args),
        Command::Price(args) => commands::price(args).await,
        Command::MockExchange(args) => commands::mock_exchange(args).await,
        Command::Migrate(args) => commands::migrate(args).await,
        Command::Run(args) => commands::run(args).await,
        Command::Bootstrap(args) => commands::bootstrap(args).await,
        Command::Verify(args) => commands::verify(args).await,
        Command::Status(args) => commands::status(args).await,
    };
    result.unwrap_or_else(|err| {
        log::error!("{err:#}");
        ExitCode::FAILURE
    })
}
