//! The database: connecting, migrating, and the sea-orm entities.
pub mod audit;
pub mod jwt;
pub mod kept;
pub mod mfa;
pub mod perm;
pub mod session;
pub mod throttle_hit;
pub mod token;
pub mod user;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, TransactionTrait};

use crate::config;

/// Opens the pool: SQLite with WAL, foreign keys and a busy timeout (so concurrent writers
/// wait instead of failing); PostgreSQL in the configured schema.
pub async fn connect(settings: &config::Database) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(settings.url.expose().to_owned());
    opts.max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .connect_timeout(Duration::from_secs(settings.connect_timeout))
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
        })
        .map_sqlx_sqlite_pool_opts(|pool| pool.after_connect(|conn, _| stable_query_plans(conn)));
    if !settings.schema.is_empty() {
        if !is_identifier(&settings.schema) {
            return Err(DbErr::Custom(format!("database.schema {:?} must be letters, digits and _", settings.schema)));
        }
        opts.set_schema_search_path(settings.schema.clone());
    }
    let db = Database::connect(opts).await?;
    if db.get_database_backend() == DbBackend::Postgres && !settings.schema.is_empty() {
        // CREATE SCHEMA IF NOT EXISTS races between instances starting together: serialise.
        let txn = db.begin().await?;
        txn.execute_unprepared(MIGRATION_LOCK).await?;
        txn.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", settings.schema)).await?;
        txn.commit().await?;
    }
    Ok(db)
}

/// SQLite (3.47 and later, 3.51 here) looks at the value bound to `LIMIT ?` when it plans a
/// query, and so marks the statement to be compiled again whenever a value is bound: every
/// sea-orm `.one()` (it binds `LIMIT 1`) was parsed and planned anew on every execution,
/// ~60 % of the instructions of a token lookup (callgrind; README, "Performance"). The
/// query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`) turns that off; we
/// keep no `sqlite_stat4` statistics, so plans lose nothing by it.
fn stable_query_plans(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> futures_util::future::BoxFuture<'_, Result<(), sea_orm::sqlx::Error>> {
    Box::pin(async move {
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle();
        // SAFETY: `db` is this connection's open handle, locked away from sqlx's worker thread
        // for the duration of the call (sqlx documents this use); the option takes an int and
        // a nullable int pointer for the previous value, which we do not ask for.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                db.as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                1 as std::ffi::c_int,
                std::ptr::null_mut::<std::ffi::c_int>(),
            )
        };
        if rc == libsqlite3_sys::SQLITE_OK {
            Ok(())
        } else {
            Err(sea_orm::sqlx::Error::Protocol(format!("sqlite3_db_config(ENABLE_QPSG) failed: {rc}")))
        }
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Held by the transaction that creates the schema or migrates; the key is an arbitrary
/// constant ("portcullis" folded into an i64).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7092907289375245683)";

/// A server secret by name (32 random bytes, hex): made once by whichever instance asks
/// first (an insert that does nothing on conflict), then read by all. Never logged.
pub async fn shared_secret(db: &impl ConnectionTrait, name: &str) -> Result<String, DbErr> {
    use sea_orm::{EntityTrait, Set, sea_query::OnConflict};
    let row = jwt::secret::ActiveModel {
        name: Set(name.to_owned()),
        value: Set(crate::crypto::random_hex(32)),
        created_at: Set(chrono::Utc::now()),
    };
    jwt::secret::Entity::insert(row)
        .on_conflict(OnConflict::column(jwt::secret::Column::Name).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    let found = jwt::secret::Entity::find_by_id(name.to_owned()).one(db).await?;
    found.map(|s| s.value).ok_or_else(|| DbErr::RecordNotFound(name.to_owned()))
}

/// Why the database could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database: {0}")]
    Connect(DbErr),
    #[error("cannot migrate the database: {0}")]
    Migrate(DbErr),
}

/// Connects and applies pending migrations: what `serve` and every command start with.
pub async fn open(settings: &config::Database) -> Result<DatabaseConnection, OpenError> {
    let db = connect(settings).await.map_err(OpenError::Connect)?;
    migrate(&db).await.map_err(OpenError::Migrate)?;
    Ok(db)
}

/// Applies pending migrations. On PostgreSQL, instances starting at the same moment
/// serialise on an advisory lock held by the migrating transaction, so each migration runs
/// exactly once; SQLite's own write lock does the same for one file.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_unprepared(MIGRATION_LOCK).await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    } else {
        Migrator::up(db, None).await
    }
}

/// Whether an error is a unique-constraint violation (a lost insert race).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_connections_keep_their_query_plans_whatever_limit_is_bound() {
        let dir = tempfile::tempdir().unwrap();
        let settings = config::Database {
            url: config::Secret::new(format!("sqlite://{}?mode=rwc", dir.path().join("t.sqlite3").display())),
            schema: String::new(),
            max_connections: 2,
            min_connections: 1,
            connect_timeout: 5,
            acquire_timeout: 5,
        };
        let db = connect(&settings).await.unwrap();
        let mut conn = db.get_sqlite_connection_pool().acquire().await.unwrap();
        let mut handle = conn.lock_handle().await.unwrap();
        let mut on: std::ffi::c_int = -1;
        // SAFETY: as in `stable_query_plans`; -1 asks for the current value without changing it.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
                -1 as std::ffi::c_int,
                &mut on as *mut std::ffi::c_int,
            )
        };
        assert_eq!(rc, libsqlite3_sys::SQLITE_OK);
        assert_eq!(on, 1, "without it every `LIMIT ?` query is compiled again on each run");
    }
}
