//! The command line, with Django's command names: the clap types here, what each command
//! does in the modules beside it. Commands that change an account call the same use case
//! (`service::accounts::Accounts`) as the HTTP endpoint for that change.
mod accounts;
mod input;
mod maintenance;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use run::{CliError, run};

use crate::config;

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
    /// A new JWT signing key from now on, on every instance; the old one verifies (and stays
    /// in /.well-known/jwks.json) until every token it signed has expired
    Rotatekeys,
    /// End every session, token and JWT of a user (as POST /logoutall/ does)
    Logoutall { username: String },
    /// Let a user log in again
    Activate { username: String },
    /// Stop a user from logging in; their sessions, tokens and JWTs stop working at once
    Deactivate { username: String },
    /// Remove a user's second factor (TOTP and recovery codes), e.g. after a lost phone;
    /// the operator needs no code
    #[command(name = "disable_mfa")]
    DisableMfa { username: String },
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
    /// Send a test email to each ADDRESS, to check the [email] settings (Django's command)
    Sendtestemail {
        #[arg(required = true, value_name = "ADDRESS")]
        addresses: Vec<String>,
    },
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
