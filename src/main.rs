//! The `portcullis` binary: parse the command line, load the settings, start logging, dispatch.
use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use portcullis::{cli, config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let settings = match config::load(args.config.as_deref(), &args.command.overrides()) {
        Ok(settings) => settings,
        Err(error) => return fail(&format!("configuration error: {error}")),
    };
    // Maintenance commands print their own one-line result; only warnings are logged.
    let level = if matches!(args.command, cli::Command::Serve { .. }) { settings.log.level.as_str() } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(portcullis::logging::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = cli::run(args.command, settings).await;
    portcullis::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("Error: {message}");
    ExitCode::FAILURE
}
