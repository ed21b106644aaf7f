//! The command line, with Django's command names.
use std::{
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
};

use clap::{Parser, Subcommand};
use sea_orm::DatabaseConnection;

use crate::{
    config::{self, Settings},
    events::{EventContext, EventKind},
    service::{
        FieldErrors, ServiceError,
        accounts::{self, NewUser},
        jwt, permissions, sessions, tokens,
    },
    state::AppState,
    store,
};

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Session, token and JWT authentication with Django REST Framework's semantics"
)]
pub struct Cli {
    /// A TOML file overriding the compiled-in defaults (see config/default.toml)
    #[arg(long, global = true, env = "PORTCULLIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations if needed, then serve HTTP until SIGTERM/SIGINT
    Serve {
        /// Listen address, e.g. 0.0.0.0:8000 (overrides server.bind)
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Apply database migrations
    Migrate,
    /// Create a superuser (prompts, or --noinput with PORTCULLIS_SUPERUSER_PASSWORD)
    Createsuperuser {
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Do not prompt: take the password from PORTCULLIS_SUPERUSER_PASSWORD
        #[arg(long)]
        noinput: bool,
    },
    /// Change a user's password (prompts twice; Django's validators apply)
    Changepassword { username: String },
    /// Print the OpenAPI spec (what openapi/openapi.json holds)
    Openapi,
    /// Create a token for a user and print it (DRF's drf_create_token)
    #[command(name = "drf_create_token")]
    DrfCreateToken {
        username: String,
        /// Revoke the user's other tokens first
        #[arg(short = 'r', long = "reset")]
        reset: bool,
    },
    /// Delete expired sessions
    Clearsessions,
    /// Delete expired tokens and expired JWT blacklist entries
    Flushexpiredtokens,
    /// Let a user log in again
    Activate { username: String },
    /// Stop a user from logging in; their sessions, tokens and JWTs stop working at once
    Deactivate { username: String },
    /// Give a user (or with --group, a group) a permission "app_label.codename"
    Grant {
        name: String,
        permission: String,
        /// NAME is a group, not a user
        #[arg(long)]
        group: bool,
    },
    /// Take a permission "app_label.codename" from a user
    Revoke { username: String, permission: String },
    /// Put a user in a group (created if missing)
    Addtogroup { username: String, group: String },
    /// Print security events from the audit trail, newest first
    Audit {
        /// Only this user's events (username)
        #[arg(long)]
        user: Option<String>,
        /// Only this event type (e.g. login_failed)
        #[arg(long)]
        event: Option<String>,
        /// Only events at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z)
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Delete audit events older than audit.retention_days
    Clearaudit,
    /// Import users, groups, permissions, DRF tokens (and live sessions) from a Django project
    #[command(name = "import-django")]
    ImportDjango {
        /// The Django database (sqlite:///path/to/db.sqlite3, postgres://user@host/db) or a
        /// `manage.py dumpdata auth authtoken contenttypes --format json` file
        #[arg(long, value_name = "SOURCE")]
        from: String,
        /// Check and count everything, write nothing
        #[arg(long)]
        dry_run: bool,
        /// Leave out rows that cannot be imported (and what depends on them) instead of stopping
        #[arg(long)]
        skip_bad_rows: bool,
        /// Also import live django_session rows (needs Django's SECRET_KEY)
        #[arg(long)]
        sessions: bool,
        /// Django's SECRET_KEY, to verify session data (prefer the env variable or a file:
        /// command lines are visible to other users)
        #[arg(long, env = "DJANGO_SECRET_KEY", hide_env_values = true, value_name = "KEY")]
        django_secret_key: Option<String>,
        /// A file holding Django's SECRET_KEY
        #[arg(long, value_name = "FILE", conflicts_with = "django_secret_key")]
        django_secret_key_file: Option<PathBuf>,
        /// Django's SECRET_KEY_FALLBACKS, tried after the key (repeatable)
        #[arg(long, value_name = "KEY")]
        django_secret_key_fallback: Vec<String>,
    },
}

impl Command {
    pub fn overrides(&self) -> config::Overrides {
        match self {
            Command::Serve { bind } => config::Overrides { bind: bind.clone() },
            _ => config::Overrides::default(),
        }
    }
}

/// Runs a command other than `serve`; the error is the one line printed before exit 1.
pub async fn run(command: Command, settings: Settings) -> Result<(), String> {
    match command {
        Command::Serve { .. } => crate::server::serve(settings).await,
        Command::Migrate => {
            let db = open(&settings).await?;
            println!("Migrations applied.");
            db.close().await.map_err(|e| e.to_string())
        }
        Command::Openapi => {
            // The spec needs no data: a private in-memory database (one connection, or each
            // would see its own empty database).
            let mut opts = sea_orm::ConnectOptions::new("sqlite::memory:");
            opts.sqlx_logging(false).max_connections(1);
            let db = sea_orm::Database::connect(opts).await.map_err(|e| e.to_string())?;
            store::migrate(&db).await.map_err(|e| e.to_string())?;
            let state = AppState::new(db, settings).await?;
            // No newline: `portcullis openapi > openapi/openapi.json` must equal what is served.
            print!("{}", crate::app::spec_json(&state));
            Ok(())
        }
        command => {
            let state = AppState::new(open(&settings).await?, settings).await?;
            let result = match command {
                Command::Createsuperuser { username, email, noinput } => {
                    createsuperuser(&state, username, email, noinput).await
                }
                Command::Changepassword { username } => changepassword(&state, &username).await,
                Command::ImportDjango {
                    from,
                    dry_run,
                    skip_bad_rows,
                    sessions,
                    django_secret_key,
                    django_secret_key_file,
                    django_secret_key_fallback,
                } => {
                    let secret = match (django_secret_key, django_secret_key_file) {
                        (Some(key), _) => Some(key),
                        (None, Some(file)) => Some(
                            std::fs::read_to_string(&file)
                                .map_err(|e| format!("cannot read {}: {e}", file.display()))?
                                .trim_end_matches(['\r', '\n'])
                                .to_owned(),
                        ),
                        (None, None) => None,
                    };
                    let secret_keys = match (sessions, secret) {
                        (false, _) => Vec::new(),
                        (true, None) => {
                            return Err("--sessions needs Django's SECRET_KEY: --django-secret-key-file FILE or \
                                        DJANGO_SECRET_KEY"
                                .into());
                        }
                        (true, Some(key)) if key.is_empty() => return Err("the Django SECRET_KEY is empty".into()),
                        (true, Some(key)) => std::iter::once(key).chain(django_secret_key_fallback).collect(),
                    };
                    let options = crate::django_import::Options {
                        source: crate::django_import::Source::parse(&from)?,
                        dry_run,
                        skip_bad_rows,
                        secret_keys,
                        progress: std::io::stderr().is_terminal(),
                    };
                    import_django(&state, &options).await
                }
                other => admin(&state, other).await.map_err(describe),
            };
            // The audit trail is written in the background: finish before exiting.
            state.events.flush().await;
            result
        }
    }
}

/// The maintenance commands; each prints one line on success.
async fn admin(state: &AppState, command: Command) -> Result<(), ServiceError> {
    let db = &state.db;
    match command {
        Command::DrfCreateToken { username, reset } => {
            let user = accounts::find_by_username(db, &username).await?.ok_or_else(|| {
                ServiceError::NotFound(format!("Cannot create the Token for user {username}: user does not exist"))
            })?;
            if reset {
                tokens::delete_for_user(db, user.id).await?;
            }
            let (key, token) = tokens::create(db, user.id, "cli", state.settings.token.ttl).await?;
            emit(state, EventKind::TokenCreated, &user, Some(token.id.to_string())).await;
            println!("Generated token {key} for user {username}");
        }
        Command::Clearsessions => println!("Deleted {} expired sessions.", sessions::clear_expired(db).await?),
        Command::Flushexpiredtokens => {
            let tokens = tokens::flush_expired(db).await?;
            let jwts = jwt::flush_expired(db).await?;
            println!("Deleted {tokens} expired tokens and {jwts} expired refresh-token records.");
        }
        Command::Activate { username } => {
            let user = accounts::set_active(db, &username, true).await?;
            emit(state, EventKind::UserActivated, &user, None).await;
            println!("User '{username}' is active.");
        }
        Command::Deactivate { username } => {
            let user = accounts::set_active(db, &username, false).await?;
            emit(state, EventKind::UserDeactivated, &user, None).await;
            println!("User '{username}' is inactive: their sessions, tokens and JWTs no longer work.");
        }
        Command::Grant { name, permission, group: true } => {
            let added = permissions::grant_group(db, &name, &permission).await?;
            println!(
                "{}",
                if added {
                    format!("Granted {permission} to group '{name}'.")
                } else {
                    format!("Group '{name}' already had {permission}.")
                }
            );
        }
        Command::Grant { name, permission, group: false } => {
            let added = permissions::grant(db, &name, &permission).await?;
            if let Some(user) = accounts::find_by_username(db, &name).await? {
                emit(state, EventKind::PermissionGranted, &user, Some(permission.clone())).await;
            }
            println!(
                "{}",
                if added {
                    format!("Granted {permission} to '{name}'.")
                } else {
                    format!("'{name}' already had {permission}.")
                }
            );
        }
        Command::Revoke { username, permission } => {
            let removed = permissions::revoke(db, &username, &permission).await?;
            if let Some(user) = accounts::find_by_username(db, &username).await? {
                emit(state, EventKind::PermissionRevoked, &user, Some(permission.clone())).await;
            }
            println!(
                "{}",
                if removed {
                    format!("Revoked {permission} from '{username}'.")
                } else {
                    format!("'{username}' did not have {permission}.")
                }
            );
        }
        Command::Addtogroup { username, group } => {
            let added = permissions::add_to_group(db, &username, &group).await?;
            println!(
                "{}",
                if added {
                    format!("Added '{username}' to group '{group}'.")
                } else {
                    format!("'{username}' was already in group '{group}'.")
                }
            );
        }
        Command::Audit { user, event, since, limit } => print_audit(state, user, event, since, limit).await?,
        Command::Clearaudit => {
            let days = state.settings.audit.retention_days;
            println!("Deleted {} audit events older than {days} days.", crate::audit::purge(db, days).await?);
        }
        Command::Serve { .. }
        | Command::Migrate
        | Command::Openapi
        | Command::Createsuperuser { .. }
        | Command::Changepassword { .. }
        | Command::ImportDjango { .. } => {}
    }
    Ok(())
}

/// Problems on stderr, the summary line on stdout.
async fn import_django(state: &AppState, options: &crate::django_import::Options) -> Result<(), String> {
    let summary = crate::django_import::run(state, options).await.map_err(|e| e.to_string())?;
    for skipped in &summary.skipped {
        eprintln!("skipped {skipped}");
    }
    for user in &summary.unreadable_hashes {
        eprintln!("warning: {user}");
    }
    let dropped = [
        (summary.sessions_expired, "expired"),
        (summary.sessions_anonymous, "anonymous (no user)"),
        (summary.sessions_stale, "stale (password changed since login)"),
    ];
    for (n, why) in dropped.iter().filter(|(n, _)| *n > 0) {
        eprintln!("not imported: {n} {why} sessions");
    }
    println!("{}", summary.line());
    Ok(())
}

async fn open(settings: &Settings) -> Result<DatabaseConnection, String> {
    let db = store::connect(&settings.database).await.map_err(|e| format!("cannot open the database: {e}"))?;
    store::migrate(&db).await.map_err(|e| format!("cannot migrate the database: {e}"))?;
    Ok(db)
}

async fn createsuperuser(
    state: &AppState,
    username: Option<String>,
    email: Option<String>,
    noinput: bool,
) -> Result<(), String> {
    let mut input = Input::new();
    let new = if noinput {
        let username = username.ok_or("You must use --username with --noinput.")?;
        let password = std::env::var("PORTCULLIS_SUPERUSER_PASSWORD")
            .map_err(|_| "Set PORTCULLIS_SUPERUSER_PASSWORD with --noinput.")?;
        superuser(username, email.unwrap_or_default(), password)
    } else {
        let username = match username {
            Some(u) => u,
            None => input.line("Username: ")?,
        };
        let email = match email {
            Some(e) => e,
            None => input.line("Email address: ")?,
        };
        superuser(username, email, input.new_password()?)
    };
    let user = accounts::register(&state.db, &state.passwords, new, FieldErrors::default()).await.map_err(describe)?;
    emit(state, EventKind::UserCreated, &user, None).await;
    println!("Superuser created successfully.");
    Ok(())
}

async fn print_audit(
    state: &AppState,
    user: Option<String>,
    event: Option<String>,
    since: Option<String>,
    limit: u64,
) -> Result<(), ServiceError> {
    let since = match since {
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|_| ServiceError::NotFound(format!("--since {s:?} is not an RFC 3339 time")))?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let filter = crate::service::audit_log::Filter { username: user, event, since, ..Default::default() };
    let (rows, count) = crate::service::audit_log::page(&state.db, &filter, 0, limit.clamp(1, 10_000)).await?;
    for e in &rows {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!(
            "{}  {:<24} user={} ip={} credential={} {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.event,
            show(&e.username),
            show(&e.ip),
            show(&e.credential),
            e.detail
        );
    }
    println!("({} of {count} events)", rows.len());
    Ok(())
}

fn superuser(username: String, email: String, password: String) -> NewUser {
    NewUser { username, email, password, is_staff: true, is_superuser: true, ..NewUser::default() }
}

async fn changepassword(state: &AppState, username: &str) -> Result<(), String> {
    let account = accounts::find_by_username(&state.db, username)
        .await
        .map_err(describe)?
        .ok_or_else(|| format!("user '{username}' does not exist"))?;
    println!("Changing password for user '{username}'");
    let password = Input::new().new_password()?;
    let user = accounts::set_password(&state.db, &state.passwords, account, password).await.map_err(describe)?;
    emit(state, EventKind::PasswordChanged, &user, None).await;
    println!("Password changed successfully for user '{username}'");
    Ok(())
}

async fn emit(state: &AppState, kind: EventKind, user: &store::user::Model, credential: Option<String>) {
    let ctx = EventContext {
        user_id: Some(user.id),
        username: Some(user.username.clone()),
        credential,
        via: Some("cli"),
        ..Default::default()
    };
    state.events.emit(kind, ctx).await;
}

fn describe(err: ServiceError) -> String {
    match err {
        ServiceError::Invalid(errors) => errors.lines().join("; "),
        other => other.to_string(),
    }
}

/// Prompts on a terminal (passwords hidden), or reads lines from piped standard input.
struct Input {
    tty: bool,
}

impl Input {
    fn new() -> Self {
        Self { tty: std::io::stdin().is_terminal() }
    }

    fn line(&mut self, prompt: &str) -> Result<String, String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("input ended before a value was given".into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn secret(&mut self, prompt: &str) -> Result<String, String> {
        if self.tty { rpassword::prompt_password(prompt).map_err(|e| e.to_string()) } else { self.line(prompt) }
    }

    /// Django's double prompt; validators run when the account is saved.
    fn new_password(&mut self) -> Result<String, String> {
        for _ in 0..3 {
            let first = self.secret("Password: ")?;
            let again = self.secret("Password (again): ")?;
            if first != again {
                eprintln!("Error: Your passwords didn't match.");
            } else if first.is_empty() {
                eprintln!("Error: Blank passwords aren't allowed.");
            } else {
                return Ok(first);
            }
        }
        Err("Aborting after 3 attempts".into())
    }
}
