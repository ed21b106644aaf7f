//! Failed password checks, counted in buckets shared by every endpoint that checks a
//! password. Each attempt is reserved in its buckets *before* the password is checked and
//! given back when it was right, so a burst of concurrent guesses cannot all pass a check
//! made before any of them failed; what is left counts failures only.
//!
//! The buckets (see `service::devices` for why): the username's, for clients that never
//! logged in as that user, or the device's, for a client holding a device cookie of that
//! user; an account's own, for re-entering one's password while logged in; and always the
//! client IP's, whatever the username.
use std::net::IpAddr;

use super::{
    Rate, Unavailable,
    store::{Hit, Store},
};

/// Whose budget an attempt spends (besides its client IP's).
#[derive(Debug, Clone, Copy)]
pub enum Bucket<'a> {
    /// A login for this username from a client it does not know.
    Username(&'a str),
    /// A login from a device that logged in as that user before (its cookie's id).
    Device(&'a str),
    /// The logged-in user re-entering their password (password change).
    Account(i64),
}

/// Attempts counted for one password check, to give back if the password was right.
#[derive(Debug, Default)]
pub struct Reservation(Vec<(String, Hit)>);

/// A bucket with no room: which one (e.g. `login:ip:10.0.0.1`), and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub bucket: String,
    pub wait: u64,
}

pub struct LoginThrottle {
    per_bucket: Option<Rate>,
    per_ip: Option<Rate>,
    store: Store,
}

impl LoginThrottle {
    pub fn new(per_bucket: Option<Rate>, per_ip: Option<Rate>) -> Self {
        Self::with_store(per_bucket, per_ip, Store::memory())
    }

    pub fn with_store(per_bucket: Option<Rate>, per_ip: Option<Rate>, store: Store) -> Self {
        Self { per_bucket, per_ip, store }
    }

    fn keys(&self, bucket: Bucket<'_>, ip: Option<IpAddr>) -> [(String, Option<Rate>); 2] {
        let bucket = match bucket {
            Bucket::Username(name) => format!("login:user:{}", crate::store::user::username_key(name)),
            Bucket::Device(id) => format!("login:device:{id}"),
            Bucket::Account(id) => format!("login:account:{id}"),
        };
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        [(bucket, self.per_bucket), (format!("login:ip:{ip}"), self.per_ip)]
    }

    /// The window failures are counted in (`throttle.login`'s period).
    pub fn period(&self) -> Option<std::time::Duration> {
        self.per_bucket.or(self.per_ip).map(|r| r.period)
    }

    /// Counts one attempt in the bucket and the IP's: `Ok(Err(full))` while either is full
    /// (then nothing is counted).
    pub async fn reserve(
        &self,
        bucket: Bucket<'_>,
        ip: Option<IpAddr>,
    ) -> Result<Result<Reservation, Full>, Unavailable> {
        let mut taken = Reservation::default();
        for (key, rate) in self.keys(bucket, ip) {
            let Some(rate) = rate else { continue };
            match self.store.take(&key, rate).await? {
                Ok(hit) => taken.0.push((key, hit)),
                Err(wait) => {
                    self.give_back(taken).await?;
                    return Ok(Err(Full { bucket: key, wait }));
                }
            }
        }
        Ok(Ok(taken))
    }

    /// The password was right: the attempt was no failure.
    pub async fn give_back(&self, reservation: Reservation) -> Result<(), Unavailable> {
        for (key, hit) in reservation.0 {
            self.store.give_back(&key, hit).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_count_per_bucket_ignoring_case_and_per_ip() {
        let t = LoginThrottle::new(Rate::parse("2/min").unwrap(), Rate::parse("3/min").unwrap());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let ok = |r: Result<Result<Reservation, Full>, Unavailable>| r.unwrap().is_ok();
        assert!(ok(t.reserve(Bucket::Username("John"), Some(a)).await));
        assert!(ok(t.reserve(Bucket::Username("john"), Some(b)).await));
        assert!(!ok(t.reserve(Bucket::Username("JOHN"), Some(b)).await), "the username is full");
        assert!(ok(t.reserve(Bucket::Device("abc"), Some(b)).await), "a known device has its own");
        let right = t.reserve(Bucket::Username("ann"), Some(a)).await.unwrap().unwrap();
        t.give_back(right).await.unwrap();
        assert!(ok(t.reserve(Bucket::Username("ann"), Some(a)).await));
        assert!(ok(t.reserve(Bucket::Username("zed"), Some(a)).await));
        assert!(!ok(t.reserve(Bucket::Username("zed"), Some(a)).await), "the IP is full");
        assert!(ok(t.reserve(Bucket::Username("zed"), Some(b)).await), "a refused attempt counted nowhere");
    }
}
