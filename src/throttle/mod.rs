//! Throttling: rates in DRF's "N/period" format, counted in sliding windows. [`Window`] is
//! DRF's `SimpleRateThrottle` (the anon and user throttles, in this process);
//! [`LoginThrottle`] counts failed password checks in buckets kept in this process, the
//! database or Redis ([`store`]).
mod email;
mod login;
mod store;

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

pub use email::EmailThrottle;
pub use login::{Bucket, Full, LoginThrottle, Reservation};
pub use store::{RedisStore, Store};

pub use crate::config::Rate;

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

/// The shared store could not be reached: logins fail closed (503), nothing else is affected.
#[derive(Debug, thiserror::Error)]
#[error("the throttle store is unavailable: {0}")]
pub struct Unavailable(pub String);

/// How long until the oldest of `hits` attempts in the window leaves it, when they fill it.
fn wait_from(rate: Rate, hits: u64, oldest_age: Duration) -> Option<u64> {
    (hits >= u64::from(rate.requests))
        .then(|| rate.period.saturating_sub(oldest_age).as_secs_f64().ceil().max(1.0) as u64)
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

    #[test]
    fn the_wait_counts_from_the_oldest_hit_in_the_window() {
        let rate = Rate::parse("3/min").unwrap().unwrap();
        assert_eq!(wait_from(rate, 2, Duration::from_secs(10)), None);
        assert_eq!(wait_from(rate, 3, Duration::from_secs(10)), Some(50));
        assert_eq!(wait_from(rate, 3, Duration::from_millis(59_900)), Some(1));
    }
}
