//! Password hashing and checking.
//!
//! The list: our argon2id first, then Django's hashers (`django`), so users imported from
//! Django log in with their existing passwords and are rehashed as argon2id at that login.
//!
//! As Django's `PASSWORD_HASHERS`: a list of hashers, the first one hashes new passwords, all
//! of them verify, and whether a stored hash "needs upgrade" (another algorithm, weaker
//! parameters than configured, another memory size) is a property of that hash. Every hash
//! and verification runs on tokio's blocking pool behind a semaphore, so a login storm queues
//! there and never occupies the async workers that serve every other request; each permit
//! comes with its own argon2 working area (`pool`), so the storm does not grow memory either.
mod argon2id;
pub mod django;
mod pool;
pub mod validators;

use std::sync::Arc;

pub use argon2id::Argon2Params;
use argon2id::{Argon2id, Scratch};
use pool::Pool;

use crate::{config, metrics::Metrics};

/// Django's marker for a user who cannot log in with a password (`set_unusable_password`).
pub const UNUSABLE_PREFIX: char = '!';

/// One entry of the hasher list.
pub trait Hasher: Send + Sync {
    /// Whether `encoded` is in this hasher's format.
    fn identifies(&self, encoded: &str) -> bool;
    /// Constant-time check of `password` against `encoded` (a format this hasher identifies).
    fn verify(&self, password: &[u8], encoded: &str) -> bool;
    /// Whether a hash this hasher made should be replaced (Django's `must_update`).
    fn must_update(&self, encoded: &str) -> bool;
}

/// What a password check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Mismatch,
    /// The password is right; `upgrade` asks the caller to store a fresh hash of it.
    Match {
        upgrade: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("invalid password settings: {0}")]
    Params(String),
    #[error("the password hashing pool is gone")]
    PoolClosed,
}

/// The hasher list plus the bounded pool it runs on. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<Metrics>,
    preferred: Argon2id,
    others: Vec<Box<dyn Hasher>>,
    pool: Pool,
    /// A real hash of a random password, verified when the user does not exist or has no
    /// usable password, so that such attempts take as long as a wrong password.
    dummy: String,
}

impl Passwords {
    /// `workers`: how many hashes may run at once (0 = the number of cores).
    pub fn new(settings: &config::Password, metrics: Arc<Metrics>) -> Result<Self, HashError> {
        let preferred = Argon2id::new(Argon2Params::from_settings(settings)?)?;
        let mut first = Scratch::new(preferred.blocks());
        let dummy = preferred.hash(random_password().as_bytes(), &mut first)?;
        let workers = match settings.hash_workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let pool = Pool::new(workers, preferred.blocks(), first);
        Ok(Self { inner: Arc::new(Inner { metrics, preferred, others: django::hashers(), pool, dummy }) })
    }

    /// Hashes `password` with the preferred hasher.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.blocking(move |inner, scratch| inner.preferred.hash(password.as_bytes(), scratch)).await?
    }

    /// Checks `password` against `encoded`; `None` (no such user) or an unusable or unknown
    /// format still costs one verification, so the answer's timing tells nothing.
    pub async fn verify(&self, password: String, encoded: Option<String>) -> Result<Verdict, HashError> {
        self.blocking(move |inner, scratch| inner.verify(password.as_bytes(), encoded.as_deref(), scratch)).await
    }

    /// Whether some hasher in the list reads `encoded` (an imported hash in a format none
    /// reads can never match: its user needs a new password).
    pub fn knows_format(&self, encoded: &str) -> bool {
        self.inner.preferred.identifies(encoded) || self.inner.others.iter().any(|h| h.identifies(encoded))
    }

    /// Whether a stored hash should be replaced, without checking any password.
    pub fn must_update(&self, encoded: &str) -> bool {
        self.inner.must_update(encoded)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Scratch) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let metrics = &self.inner.metrics;
        let queued = std::time::Instant::now();
        metrics.hash_queue.inc();
        let lease = self.inner.pool.lease().await;
        metrics.hash_queue.dec();
        metrics.hash_wait.observe(queued.elapsed().as_secs_f64());
        let mut lease = lease?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            lower_thread_priority();
            f(&inner, lease.scratch())
        })
        .await
        .map_err(|_| HashError::PoolClosed)
    }
}

/// Hashing is deliberately slow; during a login storm it must not take the CPU from the
/// async workers that answer every other request. The blocking threads that hash run at a
/// lower scheduling priority (nice 10): alone they still get the whole CPU, under
/// contention the workers come first. Password hashing is the only user of tokio's blocking
/// pool here (sqlx's SQLite workers are threads of their own).
fn lower_thread_priority() {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if LOWERED.get() {
        return;
    }
    LOWERED.set(true);
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority(2) only reads its integer arguments; on Linux PRIO_PROCESS with
    // who = 0 applies to the calling thread alone.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

impl Inner {
    fn verify(&self, password: &[u8], encoded: Option<&str>, scratch: &mut Scratch) -> Verdict {
        let Some(encoded) = encoded else { return self.dummy(password, scratch) };
        let matched = if self.preferred.identifies(encoded) {
            self.preferred.verify(password, encoded, scratch)
        } else if let Some(hasher) = self.others.iter().find(|h| h.identifies(encoded)) {
            hasher.verify(password, encoded)
        } else {
            return self.dummy(password, scratch);
        };
        match matched {
            true => Verdict::Match { upgrade: self.must_update(encoded) },
            false => Verdict::Mismatch,
        }
    }

    /// Nothing to check against (no such user, an unusable or unknown hash): the work of a
    /// wrong password, on the same path, so the answer's timing tells nothing.
    fn dummy(&self, password: &[u8], scratch: &mut Scratch) -> Verdict {
        self.preferred.verify(password, &self.dummy, scratch);
        Verdict::Mismatch
    }

    fn must_update(&self, encoded: &str) -> bool {
        !self.preferred.identifies(encoded) || self.preferred.must_update(encoded)
    }
}

/// A random string of Django's unusable-password length, for dummy and unusable hashes.
pub fn random_password() -> String {
    crate::crypto::random_hex(20)
}

/// The value stored for a user who must not log in with a password.
pub fn unusable_password() -> String {
    format!("{UNUSABLE_PREFIX}{}", crate::crypto::random_hex(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(true))
    }

    fn settings(m: u32) -> config::Password {
        config::Password { argon2_memory_kib: m, argon2_iterations: 2, argon2_parallelism: 1, hash_workers: 1 }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_and_verify() {
        let pw = Passwords::new(&settings(19456), metrics()).unwrap();
        let hash = pw.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert_eq!(
            pw.verify("correct horse".into(), Some(hash.clone())).await.unwrap(),
            Verdict::Match { upgrade: false }
        );
        assert_eq!(pw.verify("wrong".into(), Some(hash)).await.unwrap(), Verdict::Mismatch);
    }

    #[tokio::test]
    async fn missing_unusable_and_unknown_hashes_never_match() {
        let pw = Passwords::new(&settings(8192), metrics()).unwrap();
        for encoded in [None, Some(unusable_password()), Some("md5$x$y".to_owned()), Some(String::new())] {
            assert_eq!(pw.verify(String::new(), encoded).await.unwrap(), Verdict::Mismatch);
        }
    }

    #[tokio::test]
    async fn a_request_dropped_mid_hash_keeps_its_permit_and_area_until_the_hash_ends() {
        // At 19 MiB a hash takes tens of milliseconds: the first two are mid-hash when dropped.
        let pw = Passwords::new(&config::Password { hash_workers: 2, ..settings(19456) }, metrics()).unwrap();
        let hash = pw.hash("pw".into()).await.unwrap();
        let verify = |pw: &Passwords| {
            let (pw, hash) = (pw.clone(), hash.clone());
            tokio::spawn(async move { pw.verify("wrong".into(), Some(hash)).await })
        };
        let dropped: Vec<_> = (0..6).map(|_| verify(&pw)).collect();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        dropped.iter().for_each(|task| task.abort());
        for task in (0..6).map(|_| verify(&pw)).collect::<Vec<_>>() {
            assert_eq!(task.await.unwrap().unwrap(), Verdict::Mismatch);
        }
        // Had a dropped request freed its permit early, a later one would have found no free
        // area and made a third.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the dropped hashes end
        assert_eq!(pw.inner.pool.free_areas(), 2);
    }

    #[tokio::test]
    async fn raising_parameters_makes_old_hashes_need_upgrade() {
        let old = Passwords::new(&settings(8192), metrics()).unwrap();
        let hash = old.hash("pw".into()).await.unwrap();
        let new = Passwords::new(&settings(16384), metrics()).unwrap();
        assert_eq!(new.verify("pw".into(), Some(hash.clone())).await.unwrap(), Verdict::Match { upgrade: true });
        assert!(!old.must_update(&hash));
    }
}
