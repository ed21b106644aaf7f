//! Revocations between instances: an instance that ends a credential sends a PostgreSQL
//! NOTIFY with the user's id; every instance LISTENs and drops that user's cached
//! credentials. While the channel is down an instance bypasses its cache (every request
//! reads the database) until it listens again, so `cache.ttl` is only ever the bound for
//! changes made without a notification (the CLI, or SQL by hand).
use std::{sync::Arc, time::Duration};

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{DatabaseConnection, DbBackend};

use super::cache::CredentialCache;
use crate::events::REVOCATION_CHANNEL as CHANNEL;

/// Starts the listener (PostgreSQL only).
pub fn spawn_listener(db: &DatabaseConnection, cache: Arc<CredentialCache>) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let pool = db.get_postgres_connection_pool().clone();
    // Until the first LISTEN succeeds a revocation elsewhere would go unheard: read the
    // database until then, as while the channel is down.
    cache.set_bypass(true);
    tokio::spawn(async move {
        loop {
            match listen(&pool, &cache).await {
                Ok(()) => tracing::warn!("revocation channel lost; reading the database on every request"),
                Err(e) => {
                    tracing::warn!(error = %e, "revocation channel unavailable; reading the database on every request")
                }
            }
            cache.set_bypass(true);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Listens until the connection is lost (`Ok`) or cannot be made (`Err`).
async fn listen(pool: &sea_orm::sqlx::PgPool, cache: &CredentialCache) -> Result<(), sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything revoked while we were deaf is unknown: start from an empty cache.
    cache.set_bypass(false);
    loop {
        match listener.try_recv().await? {
            Some(notification) => match notification.payload().parse::<i64>() {
                Ok(user_id) => cache.invalidate_user(user_id),
                Err(_) => cache.clear(),
            },
            None => return Ok(()),
        }
    }
}
