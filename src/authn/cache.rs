//! The credential cache under the chain: a resolved credential (session or token digest, or
//! a JWT's user) is reused for `cache.ttl` seconds without reading the database. Bounded by
//! `cache.max_entries` with moka's TinyLFU policy: when full, the credentials in use stay
//! and one-offs are not admitted (no clear-everything sweep).
//!
//! Revocation is exact on this instance, whatever the timing. Every security event that can
//! end a credential moves the user's revocation epoch (through `events::RevocationListener`)
//! before the response leaves. A lookup takes a [`ticket`](CredentialCache::ticket) *before*
//! it reads the database and stores its result with it; a result whose ticket predates the
//! user's last revocation is neither stored nor served — so a lookup that read the row just
//! before a revocation cannot put it back afterwards. Changes made elsewhere (the CLI,
//! another instance without the PostgreSQL notification) are seen within `ttl`.
use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::Identity;
use crate::{events::RevocationListener, metrics::Metrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Session([u8; 32]),
    Token([u8; 32]),
    /// A verified access token (by digest); its expiry is checked on every use.
    Jwt([u8; 32]),
}

#[derive(Clone)]
struct Entry {
    value: Arc<Identity>,
    ticket: u64,
}

/// Revocations remembered at most; beyond, those no entry or lookup can predate go, and if
/// that is not enough the whole cache is cleared (never a stale credential).
const MAX_REVOKED: usize = 10_000;

pub struct CredentialCache {
    ttl: Duration,
    metrics: Arc<Metrics>,
    entries: moka::sync::Cache<Key, Entry>,
    /// Moves on at every revocation; lookups read it as their ticket.
    epoch: AtomicU64,
    /// Per user, the epoch of their last revocation (and when it was).
    revoked: RwLock<HashMap<i64, (u64, Instant)>>,
    /// The epoch of the last `clear`: older tickets are worthless.
    cleared: AtomicU64,
    /// Set while revocations from other instances cannot be heard (the PostgreSQL
    /// notification channel is down): then every request reads the database.
    bypass: AtomicBool,
}

impl CredentialCache {
    pub fn new(ttl: Duration, max_entries: u64, metrics: Arc<Metrics>) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_entries)
            .time_to_live(ttl.max(Duration::from_millis(1)))
            .build();
        Self {
            ttl,
            metrics,
            entries,
            epoch: AtomicU64::new(0),
            revoked: RwLock::new(HashMap::new()),
            cleared: AtomicU64::new(0),
            bypass: AtomicBool::new(false),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero() && !self.bypass.load(Ordering::Relaxed)
    }

    /// Bypasses (and empties) the cache while other instances' revocations cannot be heard.
    pub fn set_bypass(&self, on: bool) {
        self.bypass.store(on, Ordering::Relaxed);
        self.clear();
    }

    /// Forgets everything, including what lookups in flight would store.
    pub fn clear(&self) {
        let now = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.cleared.store(now, Ordering::SeqCst);
        self.entries.invalidate_all();
    }

    /// Taken before reading the database for a credential; handed to [`insert`](Self::insert).
    pub fn ticket(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether something read under `ticket` may have been revoked since.
    fn stale(&self, user_id: i64, ticket: u64) -> bool {
        ticket < self.cleared.load(Ordering::SeqCst)
            || self.revoked.read().unwrap_or_else(|e| e.into_inner()).get(&user_id).is_some_and(|(at, _)| *at > ticket)
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Identity>> {
        if !self.enabled() {
            return None;
        }
        let found = self.entries.get(key).filter(|e| !self.stale(e.value.user.id, e.ticket)).map(|e| e.value);
        if found.is_some() {
            self.metrics.cache_hits.inc()
        } else {
            self.metrics.cache_misses.inc()
        };
        found
    }

    /// Stores what a lookup that took `ticket` found, unless the user was revoked since.
    pub fn insert(&self, key: Key, value: Arc<Identity>, ticket: u64) {
        if self.enabled() && !self.stale(value.user.id, ticket) {
            self.entries.insert(key, Entry { value, ticket });
        }
    }

    /// Drops one entry (after writing to that credential's row).
    pub fn forget(&self, key: &Key) {
        self.entries.invalidate(key);
    }

    /// Ends every entry of a user, and whatever lookups of theirs are in flight.
    pub fn invalidate_user(&self, user_id: i64) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        if revoked.len() >= MAX_REVOKED {
            // Entries live `ttl`, lookups a few seconds (the pool's timeouts): older
            // revocations can no longer matter.
            let horizon = self.ttl + Duration::from_secs(60);
            revoked.retain(|_, (_, at)| now.duration_since(*at) < horizon);
            if revoked.len() >= MAX_REVOKED {
                revoked.clear();
                self.cleared.store(epoch, Ordering::SeqCst);
                self.entries.invalidate_all();
            }
        }
        revoked.insert(user_id, (epoch, now));
    }

    /// How many entries are held (moka's count, settled first).
    pub fn len(&self) -> usize {
        self.entries.run_pending_tasks();
        usize::try_from(self.entries.entry_count()).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RevocationListener for CredentialCache {
    fn user_changed(&self, user_id: i64) {
        self.invalidate_user(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::{Credential, Method};

    fn identity(user_id: i64) -> Arc<Identity> {
        let user = crate::store::user::Model {
            id: user_id,
            username: format!("u{user_id}"),
            username_key: format!("u{user_id}"),
            password: String::new(),
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            is_active: true,
            is_staff: false,
            is_superuser: false,
            last_login: None,
            date_joined: chrono::Utc::now(),
            security_stamp: String::new(),
            email_verified: false,
        };
        Arc::new(Identity {
            user: Arc::new(user),
            method: Method::Token,
            credential: Credential::Token { id: 1, expires_at: None },
            aal: crate::service::identity::Aal::ONE,
        })
    }

    fn cache(ttl_ms: u64, max: u64) -> CredentialCache {
        CredentialCache::new(Duration::from_millis(ttl_ms), max, Arc::new(Metrics::new(true)))
    }

    #[test]
    fn entries_expire_and_are_dropped_per_user() {
        let cache = cache(50, 100);
        cache.insert(Key::Token([1; 32]), identity(1), cache.ticket());
        cache.insert(Key::Token([2; 32]), identity(2), cache.ticket());
        assert!(cache.get(&Key::Token([1; 32])).is_some());
        cache.invalidate_user(1);
        assert!(cache.get(&Key::Token([1; 32])).is_none());
        assert!(cache.get(&Key::Token([2; 32])).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&Key::Token([2; 32])).is_none());
    }

    #[test]
    fn a_lookup_that_started_before_a_revocation_is_not_stored() {
        let cache = cache(10_000, 100);
        let ticket = cache.ticket();
        cache.invalidate_user(1);
        cache.insert(Key::Token([1; 32]), identity(1), ticket);
        assert!(cache.get(&Key::Token([1; 32])).is_none(), "revocation wins the race");
        cache.insert(Key::Token([2; 32]), identity(2), ticket);
        assert!(cache.get(&Key::Token([2; 32])).is_some(), "other users are not affected");
        cache.insert(Key::Token([1; 32]), identity(1), cache.ticket());
        assert!(cache.get(&Key::Token([1; 32])).is_some(), "a lookup after the revocation is stored");
        let before_clear = cache.ticket();
        cache.clear();
        cache.insert(Key::Token([3; 32]), identity(3), before_clear);
        assert!(cache.get(&Key::Token([3; 32])).is_none());
    }

    #[test]
    fn a_full_cache_keeps_its_hot_entries() {
        let cache = cache(10_000, 100);
        for i in 0..10u8 {
            cache.insert(Key::Token([i; 32]), identity(1), cache.ticket());
        }
        for _ in 0..20 {
            for i in 0..10u8 {
                assert!(cache.get(&Key::Token([i; 32])).is_some());
            }
        }
        for i in 0..5_000u32 {
            let mut key = [1u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            cache.insert(Key::Jwt(key), identity(2), cache.ticket());
        }
        assert!(cache.len() <= 100, "{}", cache.len());
        let hot = (0..10u8).filter(|i| cache.get(&Key::Token([*i; 32])).is_some()).count();
        assert!(hot >= 9, "the hot entries survive a flood of one-offs: {hot}");
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let cache = cache(0, 100);
        cache.insert(Key::Jwt([1; 32]), identity(1), cache.ticket());
        assert!(cache.get(&Key::Jwt([1; 32])).is_none());
        assert!(cache.is_empty());
    }
}
