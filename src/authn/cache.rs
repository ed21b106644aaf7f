//! The credential cache under the chain: a resolved credential (session or token digest, or
//! a JWT's user) is reused for `cache.ttl` seconds without reading the database.
//!
//! Revocation stays exact where it happens: every security event that can end a credential
//! (logout, revocation, password change, deactivation, login's key rotation) is emitted
//! through `events::Events`, which drops the user's entries here before the response leaves.
//! Changes made elsewhere (the CLI, another instance) are seen within `ttl`.
use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
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

struct Entry {
    value: Arc<Identity>,
    stored: Instant,
}

/// Entries beyond this are pruned (expired first, then all): memory stays bounded whatever
/// the number of distinct credentials.
const CAPACITY: usize = 50_000;

pub struct CredentialCache {
    ttl: Duration,
    metrics: Arc<Metrics>,
    entries: RwLock<HashMap<Key, Entry>>,
    inserts: AtomicUsize,
    /// Set while revocations from other instances cannot be heard (the PostgreSQL
    /// notification channel is down): then every request reads the database.
    bypass: AtomicBool,
}

/// Expired entries are swept every this many inserts, so memory follows the credentials
/// used within `ttl`, not every credential ever seen.
const SWEEP_EVERY: usize = 1024;

impl CredentialCache {
    pub fn new(ttl: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            ttl,
            metrics,
            entries: RwLock::new(HashMap::new()),
            inserts: AtomicUsize::new(0),
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

    pub fn clear(&self) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Identity>> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let found = entries.get(key).filter(|e| e.stored.elapsed() < self.ttl).map(|e| Arc::clone(&e.value));
        if found.is_some() {
            self.metrics.cache_hits.inc()
        } else {
            self.metrics.cache_misses.inc()
        };
        found
    }

    pub fn insert(&self, key: Key, value: Arc<Identity>) {
        if !self.enabled() {
            return;
        }
        let sweep = self.inserts.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1;
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if sweep || entries.len() >= CAPACITY {
            let ttl = self.ttl;
            entries.retain(|_, e| e.stored.elapsed() < ttl);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.shrink_to_fit();
        }
        entries.insert(key, Entry { value, stored: Instant::now() });
    }

    /// Drops one entry (after writing to that credential's row).
    pub fn forget(&self, key: &Key) {
        if self.enabled() {
            self.entries.write().unwrap_or_else(|e| e.into_inner()).remove(key);
        }
    }

    /// Drops every entry of a user: the next request of each of their credentials reads
    /// the database.
    pub fn invalidate_user(&self, user_id: i64) {
        if !self.ttl.is_zero() {
            self.entries.write().unwrap_or_else(|e| e.into_inner()).retain(|_, e| e.value.user.id != user_id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
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
        };
        Arc::new(Identity {
            user: Arc::new(user),
            method: Method::Token,
            credential: Credential::Token { id: 1, expires_at: None },
        })
    }

    #[test]
    fn entries_expire_and_are_dropped_per_user() {
        let cache = CredentialCache::new(Duration::from_millis(50), Arc::new(Metrics::new(true)));
        cache.insert(Key::Token([1; 32]), identity(1));
        cache.insert(Key::Token([2; 32]), identity(2));
        assert!(cache.get(&Key::Token([1; 32])).is_some());
        cache.invalidate_user(1);
        assert!(cache.get(&Key::Token([1; 32])).is_none());
        assert!(cache.get(&Key::Token([2; 32])).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get(&Key::Token([2; 32])).is_none());
    }

    #[test]
    fn expired_entries_are_swept() {
        let cache = CredentialCache::new(Duration::from_millis(20), Arc::new(Metrics::new(true)));
        for i in 0..100u8 {
            cache.insert(Key::Token([i; 32]), identity(1));
        }
        std::thread::sleep(Duration::from_millis(30));
        for i in 0..SWEEP_EVERY {
            cache.insert(Key::Jwt([(i % 200) as u8; 32]), identity(2));
        }
        assert!(cache.len() <= 200, "{}", cache.len());
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let cache = CredentialCache::new(Duration::ZERO, Arc::new(Metrics::new(true)));
        cache.insert(Key::Jwt([1; 32]), identity(1));
        assert!(cache.get(&Key::Jwt([1; 32])).is_none());
        assert!(cache.is_empty());
    }
}
