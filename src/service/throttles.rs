//! DRF's `AnonRateThrottle` and `UserRateThrottle` (`throttle.anon`, `throttle.user`): every
//! request counts, per client IP for anonymous callers and per user otherwise. A refusal is
//! a security event — recorded once per key and window ([`Repeats`]), so a flood of
//! throttled requests costs the audit trail one row a window, not one a request.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::json;

use super::identity::{Identity, Origin};
use crate::{
    config,
    events::{EventContext, EventKind, Events},
    throttle::Window,
};

#[derive(Clone)]
pub struct RequestThrottles {
    anon: Arc<Window>,
    user: Arc<Window>,
    anon_repeats: Arc<Repeats>,
    user_repeats: Arc<Repeats>,
    events: Events,
}

impl RequestThrottles {
    pub fn new(settings: &config::Throttle, events: Events) -> Self {
        let period = |rate: Option<config::Rate>| rate.map_or(Duration::from_secs(60), |r| r.period);
        Self {
            anon: Arc::new(Window::new(settings.anon)),
            user: Arc::new(Window::new(settings.user)),
            anon_repeats: Arc::new(Repeats::new(period(settings.anon))),
            user_repeats: Arc::new(Repeats::new(period(settings.user))),
            events,
        }
    }

    /// `Err(seconds)` when the caller must wait; the refusal is recorded.
    pub async fn check(&self, identity: Option<&Identity>, origin: &Origin) -> Result<(), u64> {
        let (scope, key, result, repeats) = match identity {
            Some(identity) if self.user.enabled() => {
                let key = identity.user.id.to_string();
                let result = self.user.allow(&key);
                ("user", key, result, &self.user_repeats)
            }
            None if self.anon.enabled() => {
                let key = origin.ip.map_or_else(|| "unknown".into(), |ip| ip.to_string());
                let result = self.anon.allow(&key);
                ("anon", key, result, &self.anon_repeats)
            }
            _ => return Ok(()),
        };
        if let Err(wait) = result {
            let ctx = async { origin.event(identity.map(|i| i.user.as_ref()), None) };
            // Boxed: see `api::auth::record_activity`.
            Box::pin(record_throttled(&self.events, repeats, &format!("{scope}:{key}"), scope, wait, ctx)).await;
        }
        result
    }
}

/// Records a refusal by a throttle, unless this key's was recorded within the window: then
/// it is only counted (metrics), and the next record says how many went unrecorded. The
/// event's context is only worked out (`ctx`) for a refusal that is recorded.
pub async fn record_throttled(
    events: &Events,
    repeats: &Repeats,
    key: &str,
    scope: &str,
    wait: u64,
    ctx: impl Future<Output = EventContext>,
) {
    match repeats.admit(key) {
        Some(unrecorded) => {
            let detail = json!({"scope": scope, "retry_after": wait, "unrecorded_since_last": unrecorded});
            events.emit(EventKind::Throttled, ctx.await.with_detail(detail)).await;
        }
        None => events.count_only(EventKind::Throttled, &EventContext::default().with_detail(json!({"scope": scope}))),
    }
}

/// Which keys had a refusal recorded, when, and how many since went unrecorded.
pub struct Repeats {
    window: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Keys remembered at most; beyond, the expired are dropped, then all (a burst of records
/// once, rather than memory that grows with the number of keys an attacker can make).
const MAX_KEYS: usize = 10_000;

impl Repeats {
    pub fn new(window: Duration) -> Self {
        Self { window, seen: Mutex::new(HashMap::new()) }
    }

    /// `Some(refusals not recorded since the last record)` when this one is to be recorded.
    pub fn admit(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_KEYS && !seen.contains_key(key) {
            seen.retain(|_, (at, _)| now.duration_since(*at) < self.window);
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        match seen.get_mut(key) {
            Some((at, count)) if now.duration_since(*at) < self.window => {
                *count += 1;
                None
            }
            Some((at, count)) => {
                *at = now;
                Some(std::mem::take(count))
            }
            None => {
                seen.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_recorded_once_per_window_with_the_count_in_between() {
        let repeats = Repeats::new(Duration::from_millis(50));
        assert_eq!(repeats.admit("a"), Some(0));
        assert_eq!(repeats.admit("a"), None);
        assert_eq!(repeats.admit("a"), None);
        assert_eq!(repeats.admit("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(repeats.admit("a"), Some(2));
        assert_eq!(repeats.admit("a"), None);
    }
}
