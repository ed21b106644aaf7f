//! Password hashing and checking.
//!
//! The list: our argon2id first, then Django's hashers (`django`), so users imported from
//! Django log in with their existing passwords and are rehashed as argon2id at that login.
//!
//! As Django's `PASSWORD_HASHERS`: a list of hashers, the first one hashes new passwords, all
//! of them verify, and whether a stored hash "needs upgrade" (another algorithm, or weaker
//! parameters than configured) is a property of that hash. Every hash and verification runs
//! on tokio's blocking pool behind a semaphore, so a login storm queues there and never
//! occupies the async workers that serve every other request.
pub mod django;
pub mod validators;

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

use crate::{config, metrics::Metrics};

/// Django's marker for a user who cannot log in with a password (`set_unusable_password`).
pub const UNUSABLE_PREFIX: char = '!';

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    pub fn from_settings(s: &config::Password) -> Result<Self, HashError> {
        let params = Self {
            memory_kib: s.argon2_memory_kib,
            iterations: s.argon2_iterations,
            parallelism: s.argon2_parallelism,
        };
        params.argon2().map(|_| params.clone())
    }

    fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| {
            HashError::Params(format!(
                "argon2 parameters m={} t={} p={}: {e}",
                self.memory_kib, self.iterations, self.parallelism
            ))
        })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// One entry of the hasher list.
pub trait Hasher: Send + Sync {
    /// Whether `encoded` is in this hasher's format.
    fn identifies(&self, encoded: &str) -> bool;
    /// Constant-time check of `password` against `encoded` (a format this hasher identifies).
    fn verify(&self, password: &[u8], encoded: &str) -> bool;
    /// Whether a hash this hasher made should be replaced (Django's `must_update`).
    fn must_update(&self, encoded: &str) -> bool;
}

/// argon2id in the PHC string format, at the configured parameters.
struct Argon2id {
    params: Argon2Params,
    argon2: Argon2<'static>,
}

impl Argon2id {
    fn hash(&self, password: &[u8]) -> Result<String, HashError> {
        self.argon2.hash_password(password).map(|h| h.to_string()).map_err(|e| HashError::Hash(e.to_string()))
    }
}

impl Hasher for Argon2id {
    fn identifies(&self, encoded: &str) -> bool {
        encoded.starts_with("$argon2id$")
    }

    fn verify(&self, password: &[u8], encoded: &str) -> bool {
        // The parameters come from the stored hash, so hashes made under older settings verify.
        PasswordHash::new(encoded).is_ok_and(|hash| self.argon2.verify_password(password, &hash).is_ok())
    }

    fn must_update(&self, encoded: &str) -> bool {
        let Ok(hash) = PasswordHash::new(encoded) else { return true };
        let Ok(stored) = Params::try_from(&hash) else { return true };
        hash.version != Some(Version::V0x13.into())
            || stored.m_cost() < self.params.memory_kib
            || stored.t_cost() < self.params.iterations
            || stored.p_cost() < self.params.parallelism
    }
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
    permits: Semaphore,
    /// A real hash of a random password, verified when the user does not exist or has no
    /// usable password, so that such attempts take as long as a wrong password.
    dummy: String,
}

impl Passwords {
    /// `workers`: how many hashes may run at once (0 = the number of cores).
    pub fn new(settings: &config::Password, metrics: Arc<Metrics>) -> Result<Self, HashError> {
        let params = Argon2Params::from_settings(settings)?;
        let preferred = Argon2id { argon2: params.argon2()?, params };
        let dummy = preferred.hash(random_password().as_bytes())?;
        let workers = match settings.hash_workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let permits = Semaphore::new(workers);
        Ok(Self { inner: Arc::new(Inner { metrics, preferred, others: django::hashers(), permits, dummy }) })
    }

    /// Hashes `password` with the preferred hasher.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.blocking(move |inner| inner.preferred.hash(password.as_bytes())).await?
    }

    /// Checks `password` against `encoded`; `None` (no such user) or an unusable or unknown
    /// format still costs one verification, so the answer's timing tells nothing.
    pub async fn verify(&self, password: String, encoded: Option<String>) -> Result<Verdict, HashError> {
        self.blocking(move |inner| inner.verify(password.as_bytes(), encoded.as_deref())).await
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

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> T + Send + 'static) -> Result<T, HashError> {
        let metrics = &self.inner.metrics;
        let queued = std::time::Instant::now();
        metrics.hash_queue.inc();
        let permit = self.inner.permits.acquire().await;
        metrics.hash_queue.dec();
        metrics.hash_wait.observe(queued.elapsed().as_secs_f64());
        let _permit = permit.map_err(|_| HashError::PoolClosed)?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            lower_thread_priority();
            f(&inner)
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
    fn verify(&self, password: &[u8], encoded: Option<&str>) -> Verdict {
        let hasher: Option<&dyn Hasher> = encoded.and_then(|e| {
            if self.preferred.identifies(e) {
                Some(&self.preferred as &dyn Hasher)
            } else {
                self.others.iter().find(|h| h.identifies(e)).map(|h| h.as_ref())
            }
        });
        match (hasher, encoded) {
            (Some(hasher), Some(encoded)) if hasher.verify(password, encoded) => {
                Verdict::Match { upgrade: self.must_update(encoded) }
            }
            (Some(_), Some(_)) => Verdict::Mismatch,
            _ => {
                self.preferred.verify(password, &self.dummy);
                Verdict::Mismatch
            }
        }
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
    async fn raising_parameters_makes_old_hashes_need_upgrade() {
        let old = Passwords::new(&settings(8192), metrics()).unwrap();
        let hash = old.hash("pw".into()).await.unwrap();
        let new = Passwords::new(&settings(16384), metrics()).unwrap();
        assert_eq!(new.verify("pw".into(), Some(hash.clone())).await.unwrap(), Verdict::Match { upgrade: true });
        assert!(!old.must_update(&hash));
    }
}
