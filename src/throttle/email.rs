//! Recovery mails asked for, counted per email address and per client IP in the
//! `throttle.backend` store (so several instances share the counts). Whether an account has
//! the address plays no part: an unknown address is counted, and refused, as a known one.
use std::net::IpAddr;

use super::{Full, Rate, Unavailable, store::Store};

pub struct EmailThrottle {
    per_address: Option<Rate>,
    per_ip: Option<Rate>,
    store: Store,
}

impl EmailThrottle {
    pub fn new(per_address: Option<Rate>, per_ip: Option<Rate>, store: Store) -> Self {
        Self { per_address, per_ip, store }
    }

    /// The window refusals are recorded once in.
    pub fn period(&self) -> std::time::Duration {
        self.per_address.or(self.per_ip).map_or(std::time::Duration::from_secs(3600), |r| r.period)
    }

    /// Counts one request for `address` (normalised) from `ip`: `Ok(Err(full))` when either
    /// bucket is full; then nothing is counted.
    pub async fn take(&self, address: &str, ip: Option<IpAddr>) -> Result<Result<(), Full>, Unavailable> {
        // A digest: no address in the throttle table, and a key of bounded length.
        let address = hex::encode(&crate::crypto::digest(&address.to_lowercase())[..16]);
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let buckets = [(format!("email:ip:{ip}"), self.per_ip), (format!("email:address:{address}"), self.per_address)];
        let mut taken = Vec::new();
        for (key, rate) in buckets {
            let Some(rate) = rate else { continue };
            match self.store.take(&key, rate).await? {
                Ok(hit) => taken.push((key, hit)),
                Err(wait) => {
                    for (key, hit) in taken {
                        self.store.give_back(&key, hit).await?;
                    }
                    return Ok(Err(Full { bucket: key, wait }));
                }
            }
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_count_per_address_ignoring_case_and_per_ip() {
        let t = EmailThrottle::new(Rate::parse("2/hour").unwrap(), Rate::parse("3/hour").unwrap(), Store::memory());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(t.take("Ann@example.com", Some(a)).await.unwrap().is_ok());
        assert!(t.take("ann@example.com", Some(b)).await.unwrap().is_ok());
        let full = t.take("ANN@example.com", Some(b)).await.unwrap().unwrap_err();
        assert!(full.bucket.starts_with("email:address:"), "{}", full.bucket);
        assert!(!full.bucket.contains("ann"));
        assert!(t.take("bob@example.com", Some(a)).await.unwrap().is_ok());
        assert!(t.take("cy@example.com", Some(a)).await.unwrap().is_ok());
        assert!(t.take("dee@example.com", Some(a)).await.unwrap().unwrap_err().bucket.starts_with("email:ip:"));
        assert!(t.take("dee@example.com", Some(b)).await.unwrap().is_ok(), "a refused request counted nowhere");
    }
}
