//! Throttling: rates in DRF's "N/period" format, counted in sliding windows (DRF's
//! `SimpleRateThrottle` history) kept in this process.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub period: Duration,
}

impl Rate {
    /// DRF's parser: only the first letter of the period counts (`s`, `m`, `h`, `d`), so
    /// "5/min" and "5/minute" agree. Empty means "no limit".
    pub fn parse(s: &str) -> Result<Option<Rate>, String> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        let (num, period) = s.split_once('/').ok_or_else(|| format!("{s:?} is not of the form N/period"))?;
        let requests: u32 = num.trim().parse().map_err(|_| format!("{num:?} is not a whole number of requests"))?;
        let secs = match period.trim().chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86400,
            _ => return Err(format!("unknown period {period:?} (use s, sec, m, min, h, hour, d or day)")),
        };
        if requests == 0 {
            return Err(format!("{s:?} allows no request at all"));
        }
        Ok(Some(Rate { requests, period: Duration::from_secs(secs) }))
    }

    pub fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.period.as_secs_f64()
    }
}

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

/// Failed password checks, per username and per client IP, shared by every endpoint that
/// checks a password. A success does not reset the count.
#[derive(Debug)]
pub struct LoginThrottle {
    per_user: Window,
    per_ip: Window,
}

impl LoginThrottle {
    pub fn new(per_user: Option<Rate>, per_ip: Option<Rate>) -> Self {
        Self { per_user: Window::new(per_user), per_ip: Window::new(per_ip) }
    }

    fn keys(username: &str, ip: Option<IpAddr>) -> (String, String) {
        (crate::store::user::username_key(username), ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()))
    }

    /// `Err(seconds)` while either count is at its limit.
    pub fn check(&self, username: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let (user, ip) = Self::keys(username, ip);
        match (self.per_user.wait(&user), self.per_ip.wait(&ip)) {
            (None, None) => Ok(()),
            (a, b) => Err(a.unwrap_or(0).max(b.unwrap_or(0))),
        }
    }

    pub fn failed(&self, username: &str, ip: Option<IpAddr>) {
        let (user, ip) = Self::keys(username, ip);
        self.per_user.record(&user);
        self.per_ip.record(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_drf_rates() {
        assert_eq!(Rate::parse("5/min").unwrap(), Some(Rate { requests: 5, period: Duration::from_secs(60) }));
        assert_eq!(Rate::parse("100/day").unwrap().unwrap().period, Duration::from_secs(86400));
        assert_eq!(Rate::parse("").unwrap(), None);
        assert!(Rate::parse("5").is_err());
        assert!(Rate::parse("x/min").is_err());
        assert!(Rate::parse("5/week").is_err());
        assert!(Rate::parse("0/s").is_err());
    }

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
    fn login_failures_count_per_username_ignoring_case_and_per_ip() {
        let t = LoginThrottle::new(Rate::parse("2/min").unwrap(), Rate::parse("3/min").unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed("John", Some(ip));
        assert!(t.check("john", Some(ip)).is_ok());
        t.failed("john", Some(ip));
        assert!(t.check("JOHN", None).is_err());
        assert!(t.check("ann", Some(ip)).is_ok());
        t.failed("ann", Some(ip));
        assert!(t.check("zed", Some(ip)).is_err(), "the IP is at its limit");
    }
}
