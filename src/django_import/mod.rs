//! `portcullis import-django`: a Django project's users, groups, permissions, their joins,
//! DRF tokens and (optionally) live sessions, in one transaction.
//!
//! Every row is read and checked before any is written, so a bad row stops the import with
//! nothing changed (or, with `--skip-bad-rows`, is left out with what depends on it). Rows
//! are matched to what is already here by natural key (username, group name,
//! `app_label.codename`, token and session key digests), so a second run changes nothing.
//! Users keep their Django ids when those are free, so simplejwt's `user_id` claims and
//! client-side references stay right. A `--dry-run` does everything inside the transaction
//! and rolls it back: its report is exactly what a real run would do.
pub mod signing;
pub mod source;

mod plan;
mod progress;
mod report;
mod write;

use sea_orm::{DatabaseTransaction, DbErr, EntityTrait, TransactionTrait};
use serde_json::json;

use plan::Plan;
use progress::Progress;
pub use report::{Count, Problem, Summary, thousands};
use source::DjangoData;
pub use source::Source;

use crate::{
    events::{EventContext, EventKind},
    password::Passwords,
    state::AppState,
    store::user,
};

#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    pub dry_run: bool,
    pub skip_bad_rows: bool,
    /// Import live `django_session` rows, verified with these keys (SECRET_KEY first, then
    /// SECRET_KEY_FALLBACKS). Empty: sessions are not imported.
    pub secret_keys: Vec<String>,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source cannot be read, or is not a Django project's auth data.
    #[error("{0}")]
    Source(String),
    /// Rows that break Django's rules or refer to rows the source does not have.
    #[error("{} rows cannot be imported (nothing was written; --skip-bad-rows leaves them out):\n  {}",
        .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    BadRows(Vec<Problem>),
    /// Reading the users here or writing the import failed.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

pub async fn run(state: &AppState, options: &Options) -> Result<Summary, ImportError> {
    let progress = Progress::new(options.progress);
    progress.phase(format!("reading {}", options.source.describe()));
    let data = source::read(&options.source, !options.secret_keys.is_empty()).await?;
    let txn = state.db.begin().await?;
    let result = import(&txn, &state.passwords, data, options, &progress).await;
    let summary = match result {
        Ok(summary) if !options.dry_run => {
            txn.commit().await?;
            summary
        }
        other => {
            txn.rollback().await?;
            other?
        }
    };
    progress.finish();
    if !options.dry_run {
        announce(state, options, &summary).await;
    }
    Ok(summary)
}

/// The audit events of an import that was written.
async fn announce(state: &AppState, options: &Options, summary: &Summary) {
    let detail = json!({
        "source": options.source.describe(),
        "users": summary.users.new, "users_updated": summary.users.updated,
        "groups": summary.groups.new, "permissions": summary.permissions.new,
        "tokens": summary.tokens.new, "sessions": summary.sessions.new,
        "skipped": summary.skipped.len(),
    });
    let ctx = EventContext { via: Some("cli"), detail: Some(detail), ..Default::default() };
    state.events.emit(EventKind::DjangoImport, ctx).await;
    // A user deactivated or given a new password in Django: running servers drop what
    // they cached of them (and hear of it through NOTIFY on PostgreSQL).
    for (id, username) in &summary.updated_users {
        let ctx = EventContext {
            user_id: Some(*id),
            username: Some(username.clone()),
            via: Some("cli"),
            detail: Some(json!({"updated": true})),
            ..Default::default()
        };
        state.events.emit(EventKind::DjangoImport, ctx).await;
    }
}

/// Plans, then writes table by table: groups, permissions and users first, as the joins,
/// tokens and sessions refer to them.
async fn import(
    txn: &DatabaseTransaction,
    passwords: &Passwords,
    data: DjangoData,
    options: &Options,
    progress: &Progress,
) -> Result<Summary, ImportError> {
    let mut summary = Summary { dry_run: options.dry_run, ..Default::default() };
    let existing = user::Entity::find().all(txn).await?;
    let plan = Plan::make(&data, existing, passwords, &options.secret_keys, &mut summary);
    if !plan.problems.is_empty() && !options.skip_bad_rows {
        return Err(ImportError::BadRows(plan.problems));
    }
    summary.skipped = plan.problems.clone();
    progress.start(plan.rows());

    let groups = write::groups(txn, &plan, &mut summary, progress).await?;
    let permissions = write::permissions(txn, &plan, &mut summary, progress).await?;
    let users = write::users(txn, &plan, &mut summary, progress).await?;
    write::joins(txn, &plan, &users, (&groups, &permissions), &mut summary, progress).await?;
    write::tokens(txn, &plan, &users, &mut summary, progress).await?;
    write::sessions(txn, &plan, &users, &mut summary, progress).await?;
    Ok(summary)
}
