//! Throttling: rates in DRF's "N/period" format, counted in sliding windows (DRF's
//! `SimpleRateThrottle` history) kept in this process.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;

pub use crate::config::Rate;
use crate::store::throttle_hit;

/// Timestamps per key within one rate's window.
#[derive(Debug)]
pub struct Window {
    rate: Option<Rate>,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Past this many keys, keys whose history has expired are dropped.
const PRUNE_AT: usize = 10_000;

impl Window {
    pub fn new(rate: Option<Rate>) -> Self {
        Self { rate, hits: Mutex::new(HashMap::new()) }
    }

    pub fn enabled(&self) -> bool {
        self.rate.is_some()
    }

    /// Seconds to wait before `key` may go on, or `None` if it may now (DRF's `wait()`,
    /// rounded up).
    pub fn wait(&self, key: &str) -> Option<u64> {
        let rate = self.rate?;
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        let history = hits.get_mut(key)?;
        while history.front().is_some_and(|t| now.duration_since(*t) >= rate.period) {
            history.pop_front();
        }
        let allowed = rate.requests as usize;
        if history.len() < allowed {
            return None;
        }
        let oldest = *history.front()?;
        let remaining = rate.period.saturating_sub(now.duration_since(oldest));
        let available = (allowed + 1).saturating_sub(history.len()).max(1) as f64;
        Some((remaining.as_secs_f64() / available).ceil().max(1.0) as u64)
    }

    /// Counts one event for `key`.
    pub fn record(&self, key: &str) {
        let Some(rate) = self.rate else { return };
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if hits.len() >= PRUNE_AT {
            hits.retain(|_, h| h.back().is_some_and(|t| now.duration_since(*t) < rate.period));
        }
        let history = hits.entry(key.to_owned()).or_default();
        history.push_back(now);
        while history.len() > rate.requests as usize {
            history.pop_front();
        }
    }

    /// DRF's `allow_request`: only allowed requests are counted.
    pub fn allow(&self, key: &str) -> Result<(), u64> {
        match self.wait(key) {
            Some(wait) => Err(wait),
            None => {
                self.record(key);
                Ok(())
            }
        }
    }
}

/// Where failure counts live: this process (one instance), or shared by every instance
/// through the database or Redis (`throttle.backend`).
pub enum Store {
    Memory { per_user: Window, per_ip: Window },
    Database(DatabaseConnection),
    Redis(RedisStore),
}

/// The shared store could not be reached: logins fail closed (503), nothing else is affected.
#[derive(Debug, thiserror::Error)]
#[error("the throttle store is unavailable: {0}")]
pub struct Unavailable(pub String);

/// Failed password checks, per username and per client IP, shared by every endpoint that
/// checks a password. A success does not reset the count.
pub struct LoginThrottle {
    per_user: Option<Rate>,
    per_ip: Option<Rate>,
    store: Store,
}

impl LoginThrottle {
    pub fn new(per_user: Option<Rate>, per_ip: Option<Rate>) -> Self {
        Self::with_store(
            per_user,
            per_ip,
            Store::Memory { per_user: Window::new(per_user), per_ip: Window::new(per_ip) },
        )
    }

    pub fn with_store(per_user: Option<Rate>, per_ip: Option<Rate>, store: Store) -> Self {
        Self { per_user, per_ip, store }
    }

    fn keys(username: &str, ip: Option<IpAddr>) -> (String, String) {
        let user = crate::store::user::username_key(username);
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        (format!("login:user:{user}"), format!("login:ip:{ip}"))
    }

    /// `Ok(Err(seconds))` while either count is at its limit.
    pub async fn check(&self, username: &str, ip: Option<IpAddr>) -> Result<Result<(), u64>, Unavailable> {
        let (user, ip) = Self::keys(username, ip);
        let (a, b) = match &self.store {
            Store::Memory { per_user, per_ip } => (per_user.wait(&user), per_ip.wait(&ip)),
            Store::Database(db) => (db_wait(db, &user, self.per_user).await?, db_wait(db, &ip, self.per_ip).await?),
            Store::Redis(redis) => (redis.wait(&user, self.per_user).await?, redis.wait(&ip, self.per_ip).await?),
        };
        Ok(match (a, b) {
            (None, None) => Ok(()),
            (a, b) => Err(a.unwrap_or(0).max(b.unwrap_or(0))),
        })
    }

    pub async fn failed(&self, username: &str, ip: Option<IpAddr>) -> Result<(), Unavailable> {
        let (user, ip) = Self::keys(username, ip);
        match &self.store {
            Store::Memory { per_user, per_ip } => {
                per_user.record(&user);
                per_ip.record(&ip);
            }
            Store::Database(db) => {
                db_record(db, &user, self.per_user).await?;
                db_record(db, &ip, self.per_ip).await?;
            }
            Store::Redis(redis) => {
                redis.record(&user, self.per_user).await?;
                redis.record(&ip, self.per_ip).await?;
            }
        }
        Ok(())
    }
}

/// DRF's wait, from the oldest of the hits still in the window.
fn wait_from(rate: Rate, hits: u64, oldest_age: Duration) -> Option<u64> {
    (hits >= u64::from(rate.requests))
        .then(|| rate.period.saturating_sub(oldest_age).as_secs_f64().ceil().max(1.0) as u64)
}

async fn db_wait(db: &DatabaseConnection, key: &str, rate: Option<Rate>) -> Result<Option<u64>, Unavailable> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let Some(rate) = rate else { return Ok(None) };
    let since = chrono::Utc::now() - chrono::Duration::from_std(rate.period).unwrap_or_default();
    let recent: Vec<chrono::DateTime<chrono::Utc>> = throttle_hit::Entity::find()
        .select_only()
        .column(throttle_hit::Column::At)
        .filter(throttle_hit::Column::ScopeKey.eq(key))
        .filter(throttle_hit::Column::At.gt(since))
        .order_by_desc(throttle_hit::Column::At)
        .limit(u64::from(rate.requests))
        .into_tuple()
        .all(db)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    let oldest_age = recent.last().map(|t| (chrono::Utc::now() - *t).to_std().unwrap_or_default()).unwrap_or_default();
    Ok(wait_from(rate, recent.len() as u64, oldest_age))
}

async fn db_record(db: &DatabaseConnection, key: &str, rate: Option<Rate>) -> Result<(), Unavailable> {
    use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
    let Some(rate) = rate else { return Ok(()) };
    let now = chrono::Utc::now();
    throttle_hit::ActiveModel { scope_key: Set(key.to_owned()), at: Set(now), ..Default::default() }
        .insert(db)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    // Hits older than the window count no more: drop this key's.
    let expired = now - chrono::Duration::from_std(rate.period).unwrap_or_default();
    throttle_hit::Entity::delete_many()
        .filter(throttle_hit::Column::ScopeKey.eq(key))
        .filter(throttle_hit::Column::At.lte(expired))
        .exec(db)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    Ok(())
}

/// Sliding logs in Redis sorted sets (score = time in ms), connected lazily so that the
/// server starts, and serves everything but password checks, while Redis is down.
pub struct RedisStore {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
}

impl RedisStore {
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        Ok(Self { client, conn: tokio::sync::Mutex::new(None) })
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

    async fn wait(&self, key: &str, rate: Option<Rate>) -> Result<Option<u64>, Unavailable> {
        let Some(rate) = rate else { return Ok(None) };
        let mut conn = self.connection().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let window = i64::try_from(rate.period.as_millis()).unwrap_or(i64::MAX);
        let (_, hits, oldest): ((), u64, Vec<(String, i64)>) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(Self::key(key))
            .arg(0)
            .arg(now - window)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(Self::key(key))
            .arg(0)
            .arg(now - window)
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
        let age = oldest.first().map_or(0, |(_, at)| now - at);
        Ok(wait_from(rate, hits, Duration::from_millis(u64::try_from(age).unwrap_or(0))))
    }

    async fn record(&self, key: &str, rate: Option<Rate>) -> Result<(), Unavailable> {
        let Some(rate) = rate else { return Ok(()) };
        let mut conn = self.connection().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let member = format!("{now}-{}", crate::crypto::random_hex(4));
        let window = u64::try_from(rate.period.as_millis()).unwrap_or(u64::MAX);
        redis::pipe()
            .cmd("ZADD")
            .arg(Self::key(key))
            .arg(now)
            .arg(member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(Self::key(key))
            .arg(window)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_up_to_the_rate_and_then_ask_to_wait() {
        let w = Window::new(Rate::parse("3/min").unwrap());
        for _ in 0..3 {
            assert_eq!(w.allow("k"), Ok(()));
        }
        let wait = w.allow("k").unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        assert_eq!(w.allow("other"), Ok(()));
        assert_eq!(Window::new(None).allow("k"), Ok(()));
    }

    #[tokio::test]
    async fn login_failures_count_per_username_ignoring_case_and_per_ip() {
        let t = LoginThrottle::new(Rate::parse("2/min").unwrap(), Rate::parse("3/min").unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed("John", Some(ip)).await.unwrap();
        assert!(t.check("john", Some(ip)).await.unwrap().is_ok());
        t.failed("john", Some(ip)).await.unwrap();
        assert!(t.check("JOHN", None).await.unwrap().is_err());
        assert!(t.check("ann", Some(ip)).await.unwrap().is_ok());
        t.failed("ann", Some(ip)).await.unwrap();
        assert!(t.check("zed", Some(ip)).await.unwrap().is_err(), "the IP is at its limit");
    }

    #[test]
    fn the_wait_counts_from_the_oldest_hit_in_the_window() {
        let rate = Rate::parse("3/min").unwrap().unwrap();
        assert_eq!(wait_from(rate, 2, Duration::from_secs(10)), None);
        assert_eq!(wait_from(rate, 3, Duration::from_secs(10)), Some(50));
        assert_eq!(wait_from(rate, 3, Duration::from_millis(59_900)), Some(1));
    }
}
