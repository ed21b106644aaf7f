//! Where login attempts are counted: this process (one instance), or shared by every
//! instance through the database or Redis (`throttle.backend`). Every store takes an
//! attempt atomically — it counts it and compares in one step — so concurrent attempts
//! cannot all see room that only one of them has; a refused attempt is not counted.
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set, Statement, TransactionTrait,
};

use super::{Rate, Unavailable, wait_from};
use crate::store::throttle_hit;

pub enum Store {
    Memory(SlidingLog),
    Database(DatabaseConnection),
    Redis(RedisStore),
}

/// One counted attempt, as its store can take it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    Memory(u64),
    Row(i64),
    Member(String),
}

impl Store {
    pub fn memory() -> Self {
        Self::Memory(SlidingLog::default())
    }

    /// Counts an attempt for `key` if the window has room: `Ok(Err(seconds))` when it has not.
    pub async fn take(&self, key: &str, rate: Rate) -> Result<Result<Hit, u64>, Unavailable> {
        match self {
            Self::Memory(log) => Ok(log.take(key, rate).map(Hit::Memory)),
            Self::Database(db) => db_take(db, key, rate).await,
            Self::Redis(redis) => redis.take(key, rate).await,
        }
    }

    /// Uncounts an attempt (its password was right).
    pub async fn give_back(&self, key: &str, hit: Hit) -> Result<(), Unavailable> {
        match (self, hit) {
            (Self::Memory(log), Hit::Memory(id)) => log.give_back(key, id),
            (Self::Database(db), Hit::Row(id)) => {
                throttle_hit::Entity::delete_by_id(id).exec(db).await.map_err(|e| Unavailable(e.to_string()))?;
            }
            (Self::Redis(redis), Hit::Member(member)) => redis.give_back(key, &member).await?,
            _ => {}
        }
        Ok(())
    }
}

/// Attempts per key in this process, each with an id so it can be taken back.
#[derive(Debug, Default)]
pub struct SlidingLog {
    hits: Mutex<HashMap<String, VecDeque<(Instant, u64)>>>,
    next: AtomicU64,
}

/// Past this many keys, keys whose attempts have all left their window are dropped.
const PRUNE_AT: usize = 10_000;

impl SlidingLog {
    fn take(&self, key: &str, rate: Rate) -> Result<u64, u64> {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if hits.len() >= PRUNE_AT {
            // Every key here had the same or a shorter period than the longest rate: an hour
            // covers both login rates in practice, and a key dropped early only forgets.
            let horizon = rate.period.max(Duration::from_secs(3600));
            hits.retain(|_, h| h.back().is_some_and(|(t, _)| now.duration_since(*t) < horizon));
        }
        let history = hits.entry(key.to_owned()).or_default();
        while history.front().is_some_and(|(t, _)| now.duration_since(*t) >= rate.period) {
            history.pop_front();
        }
        let oldest_age = history.front().map(|(t, _)| now.duration_since(*t)).unwrap_or_default();
        if let Some(wait) = wait_from(rate, history.len() as u64, oldest_age) {
            return Err(wait);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        history.push_back((now, id));
        Ok(id)
    }

    fn give_back(&self, key: &str, id: u64) {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(history) = hits.get_mut(key) {
            history.retain(|(_, hit)| *hit != id);
        }
    }
}

/// Counts an attempt in the `throttle_hit` table. On PostgreSQL the count and the insert run
/// in one transaction under an advisory lock on the key, so instances racing for the last
/// room take turns. SQLite has one writer: rows get their ids in the order they are written,
/// so an attempt is in the window's first `rate` exactly when fewer rows of the window have
/// a smaller id, and a later one is refused (and its row deleted) otherwise.
async fn db_take(db: &DatabaseConnection, key: &str, rate: Rate) -> Result<Result<Hit, u64>, Unavailable> {
    let now = chrono::Utc::now();
    let since = now - chrono::Duration::from_std(rate.period).unwrap_or_default();
    let taken = match db.get_database_backend() {
        DbBackend::Postgres => pg_take(db, key, rate, since).await,
        _ => ranked_take(db, key, rate, since).await,
    }
    .map_err(|e| Unavailable(e.to_string()))?;
    // Attempts older than the window count no more: drop this key's.
    throttle_hit::Entity::delete_many()
        .filter(throttle_hit::Column::ScopeKey.eq(key))
        .filter(throttle_hit::Column::At.lte(since))
        .exec(db)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    Ok(taken)
}

type Since = chrono::DateTime<chrono::Utc>;

fn in_window(key: &str, since: Since) -> sea_orm::Select<throttle_hit::Entity> {
    throttle_hit::Entity::find()
        .filter(throttle_hit::Column::ScopeKey.eq(key))
        .filter(throttle_hit::Column::At.gt(since))
        .order_by_asc(throttle_hit::Column::Id)
}

/// The refusal for a full window, waiting for its oldest attempt to leave it.
fn full(rate: Rate, oldest: Option<throttle_hit::Model>) -> u64 {
    let age = oldest.map(|o| (chrono::Utc::now() - o.at).to_std().unwrap_or_default()).unwrap_or_default();
    wait_from(rate, u64::from(rate.requests), age).unwrap_or(1)
}

async fn insert(db: &impl ConnectionTrait, key: &str) -> Result<throttle_hit::Model, DbErr> {
    throttle_hit::ActiveModel { scope_key: Set(key.to_owned()), at: Set(chrono::Utc::now()), ..Default::default() }
        .insert(db)
        .await
}

async fn pg_take(db: &DatabaseConnection, key: &str, rate: Rate, since: Since) -> Result<Result<Hit, u64>, DbErr> {
    let txn = db.begin().await?;
    let lock = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        [format!("portcullis.throttle:{key}").into()],
    );
    txn.execute_raw(lock).await?;
    let count = in_window(key, since).count(&txn).await?;
    if count >= u64::from(rate.requests) {
        let oldest = in_window(key, since).one(&txn).await?;
        txn.rollback().await?;
        return Ok(Err(full(rate, oldest)));
    }
    let row = insert(&txn, key).await?;
    txn.commit().await?;
    Ok(Ok(Hit::Row(row.id)))
}

async fn ranked_take(db: &DatabaseConnection, key: &str, rate: Rate, since: Since) -> Result<Result<Hit, u64>, DbErr> {
    let row = insert(db, key).await?;
    let before = in_window(key, since).filter(throttle_hit::Column::Id.lt(row.id)).count(db).await?;
    if before >= u64::from(rate.requests) {
        throttle_hit::Entity::delete_by_id(row.id).exec(db).await?;
        return Ok(Err(full(rate, in_window(key, since).one(db).await?)));
    }
    Ok(Ok(Hit::Row(row.id)))
}

/// Sliding logs in Redis sorted sets (score = time in ms), connected lazily so that the
/// server starts, and serves everything but password checks, while Redis is down.
pub struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
}

impl RedisStore {
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self { client: redis::Client::open(url)?, conn: tokio::sync::Mutex::new(None) })
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, Unavailable> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1))
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn key(key: &str) -> String {
        format!("portcullis:throttle:{key}")
    }

    /// Adds and counts in one MULTI/EXEC, so concurrent attempts see each other.
    async fn take(&self, key: &str, rate: Rate) -> Result<Result<Hit, u64>, Unavailable> {
        let mut conn = self.connection().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let window = i64::try_from(rate.period.as_millis()).unwrap_or(i64::MAX);
        let member = format!("{now}-{}", crate::crypto::random_hex(8));
        let (hits, oldest): (u64, Vec<(String, i64)>) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(Self::key(key))
            .arg(0)
            .arg(now - window)
            .ignore()
            .cmd("ZADD")
            .arg(Self::key(key))
            .arg(now)
            .arg(&member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(Self::key(key))
            .arg(window)
            .ignore()
            .cmd("ZCARD")
            .arg(Self::key(key))
            .cmd("ZRANGE")
            .arg(Self::key(key))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(|e| Unavailable(e.to_string()))?;
        if hits > u64::from(rate.requests) {
            self.give_back(key, &member).await?;
            let age = oldest.first().map_or(0, |(_, at)| now - at);
            return Ok(Err(
                wait_from(rate, hits - 1, Duration::from_millis(u64::try_from(age).unwrap_or(0))).unwrap_or(1)
            ));
        }
        Ok(Ok(Hit::Member(member)))
    }

    async fn give_back(&self, key: &str, member: &str) -> Result<(), Unavailable> {
        let mut conn = self.connection().await?;
        redis::cmd("ZREM")
            .arg(Self::key(key))
            .arg(member)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_takes_up_to_the_rate_and_gives_back() {
        let log = SlidingLog::default();
        let rate = Rate::parse("2/min").unwrap().unwrap();
        let first = log.take("k", rate).unwrap();
        log.take("k", rate).unwrap();
        let wait = log.take("k", rate).unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        log.give_back("k", first);
        assert!(log.take("k", rate).is_ok(), "a given-back attempt frees its room");
        assert!(log.take("other", rate).is_ok());
    }
}
