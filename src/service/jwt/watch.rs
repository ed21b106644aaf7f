//! Rotations made elsewhere (`portcullis rotatekeys`, another instance's start-up) reach a
//! running instance without a restart: on PostgreSQL by a NOTIFY on [`KEYS_CHANNEL`] after
//! the change commits, elsewhere (SQLite, `cache.notify = false`, or while the channel is
//! down) by reading the keys every `jwt.keys_poll_interval` seconds. Either way a token
//! naming a `kid` not seen yet makes the instance read the keys at once (`Jwt::decode`).
use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, sqlx::postgres::PgListener};

use super::Jwt;

/// The PostgreSQL channel on which a key change is announced.
pub const KEYS_CHANNEL: &str = "portcullis_keys";

/// Starts what keeps `jwt`'s keys current; nothing for keys from the configuration.
pub fn spawn(jwt: &Arc<Jwt>, notify: bool) {
    let Some(db) = jwt.db.clone() else { return };
    if notify && db.get_database_backend() == DbBackend::Postgres {
        let jwt = Arc::clone(jwt);
        let pool = db.get_postgres_connection_pool().clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&pool, &jwt).await {
                    tracing::warn!(error = %e, "key rotation channel unavailable; polling for new keys");
                }
                jwt.set_listening(false);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    let every = jwt.settings.keys_poll_interval;
    if every > 0 {
        let jwt = Arc::clone(jwt);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if !jwt.listening() {
                    reload(&jwt, "poll").await;
                }
            }
        });
    }
}

/// Listens until the connection is lost.
async fn listen(pool: &sea_orm::sqlx::PgPool, jwt: &Jwt) -> Result<(), sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(KEYS_CHANNEL).await?;
    jwt.set_listening(true);
    // A rotation announced while we were not listening was missed: read the keys now.
    reload(jwt, "listen").await;
    while listener.try_recv().await?.is_some() {
        reload(jwt, "notify").await;
    }
    Ok(())
}

async fn reload(jwt: &Jwt, why: &'static str) {
    match jwt.reload().await {
        Ok(true) => tracing::info!(kid = %jwt.keys.load().signer().kid, via = why, "JWT signing keys changed"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the JWT signing keys"),
    }
}

/// Tells every instance on this PostgreSQL database that the keys changed (elsewhere they
/// poll).
pub async fn notify(db: &DatabaseConnection) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    if let Err(e) = db.execute_unprepared(&format!("SELECT pg_notify('{KEYS_CHANNEL}', '')")).await {
        tracing::warn!(error = %e, "could not tell other instances of a key rotation");
    }
}
