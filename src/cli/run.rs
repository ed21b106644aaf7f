//! Dispatch: open the database, build the state, run one command, flush the audit trail.
use std::{io::IsTerminal, path::PathBuf};

use super::{Command, accounts, maintenance};
use crate::{
    config::Settings,
    django_import::{self, ImportError},
    server::ServeError,
    service::ServiceError,
    state::{AppState, StartError},
    store,
};

/// What a command prints on stderr before exiting 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Open(#[from] store::OpenError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Django's validators and the like: "field: message" lines, joined.
    #[error("{}", describe(.0))]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Keys(#[from] crate::service::jwt::KeyError),
    /// Bad input on the command line or at a prompt.
    #[error("{0}")]
    Usage(String),
    /// `sendtestemail`: the address and why the mail was not sent.
    #[error("could not send to {0}: {1}")]
    Mail(String, crate::mail::MailError),
}

fn describe(err: &ServiceError) -> String {
    match err {
        ServiceError::Invalid(errors) => errors.lines().join("; "),
        other => other.to_string(),
    }
}

/// Runs one command.
pub async fn run(command: Command, settings: Settings) -> Result<(), CliError> {
    match command {
        Command::Serve { .. } => Ok(crate::server::serve(settings).await?),
        Command::Migrate => {
            let db = store::open(&settings.database).await?;
            println!("Migrations applied.");
            db.close().await.map_err(|e| store::OpenError::Connect(e).into())
        }
        Command::Openapi => {
            // The spec needs no data: a private in-memory database (one connection, or each
            // would see its own empty database).
            let mut opts = sea_orm::ConnectOptions::new("sqlite::memory:");
            opts.sqlx_logging(false).max_connections(1);
            let db = sea_orm::Database::connect(opts).await.map_err(store::OpenError::Connect)?;
            store::migrate(&db).await.map_err(store::OpenError::Migrate)?;
            let state = AppState::new(db, settings).await?;
            // No newline: `portcullis openapi > openapi/openapi.json` must equal what is served.
            print!("{}", crate::app::spec_json(&state));
            Ok(())
        }
        command => {
            let state = AppState::new(store::open(&settings.database).await?, settings).await?;
            let result = dispatch(&state, command).await;
            // The audit trail is written in the background: finish before exiting.
            state.events.flush().await;
            result
        }
    }
}

async fn dispatch(state: &AppState, command: Command) -> Result<(), CliError> {
    match command {
        Command::ImportDjango {
            from,
            dry_run,
            skip_bad_rows,
            sessions,
            django_secret_key,
            django_secret_key_file,
            django_secret_key_fallback,
        } => {
            let secret = secret_key(django_secret_key, django_secret_key_file)?;
            let secret_keys = match (sessions, secret) {
                (false, _) => Vec::new(),
                (true, None) => {
                    return Err(CliError::Usage(
                        "--sessions needs Django's SECRET_KEY: --django-secret-key-file FILE or DJANGO_SECRET_KEY"
                            .into(),
                    ));
                }
                (true, Some(key)) if key.is_empty() => {
                    return Err(CliError::Usage("the Django SECRET_KEY is empty".into()));
                }
                (true, Some(key)) => std::iter::once(key).chain(django_secret_key_fallback).collect(),
            };
            let options = django_import::Options {
                source: django_import::Source::parse(&from).map_err(CliError::Usage)?,
                dry_run,
                skip_bad_rows,
                secret_keys,
                progress: std::io::stderr().is_terminal(),
            };
            maintenance::import_django(state, &options).await
        }
        command if accounts::handles(&command) => accounts::run(state, command).await,
        command => maintenance::run(state, command).await,
    }
}

/// Django's SECRET_KEY from the option (or its environment variable), or from a file.
fn secret_key(key: Option<String>, file: Option<PathBuf>) -> Result<Option<String>, CliError> {
    Ok(match (key, file) {
        (Some(key), _) => Some(key),
        (None, Some(file)) => Some(
            std::fs::read_to_string(&file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        (None, None) => None,
    })
}
