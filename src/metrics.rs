//! Prometheus metrics, one registry per application (no global state, so tests and several
//! apps in one process do not mix their counts).
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use rustc_hash::FxHashMap;
use sea_orm::{DatabaseConnection, DbBackend};
use std::sync::{PoisonError, RwLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub authenticator: &'static str,
    /// success, not_mine, stale (not mine, a dead credential) or failure
    pub outcome: &'static str,
    /// For failures: DRF's detail or simplejwt's code, "csrf", "throttled", "unavailable".
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    pub scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailLabels {
    /// password_reset, email_verification, test
    pub kind: &'static str,
    /// sent, failed (the server refused, timed out or was unreachable), dropped (queue full)
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MfaLabels {
    /// totp, recovery_code
    pub method: &'static str,
    /// success, failure (wrong or replayed)
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

pub struct Metrics {
    /// `metrics.enabled`: when off, per-request HTTP metrics are not collected.
    pub enabled: bool,
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub authentications: Family<AuthLabels, Counter>,
    pub security_events: Family<EventLabels, Counter>,
    pub logins: Family<OutcomeLabels, Counter>,
    pub throttled: Family<ScopeLabels, Counter>,
    pub refresh_rotations: Counter,
    pub reuse_detections: Counter,
    pub hash_queue: Gauge,
    pub hash_wait: Histogram,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_entries: Gauge,
    pub db_pool_size: Gauge,
    pub db_pool_idle: Gauge,
    pub audit_written: Counter,
    pub audit_dropped: Counter,
    pub emails: Family<MailLabels, Counter>,
    pub mfa_codes: Family<MfaLabels, Counter>,
    /// The request metrics of each label set seen, kept after the first request (`request`).
    request_handles: RwLock<FxHashMap<RequestLabels, (Counter, Histogram)>>,
}

/// Label sets whose request metrics are kept at hand; beyond, requests still count, through
/// the families. Routes are the policy table's patterns, methods eight: statuses bound it.
const MAX_REQUEST_HANDLES: usize = 4096;

impl Metrics {
    /// One request: its count by route, method and status, its latency by route. A metric
    /// of a `Family` is shared, so the pair kept for a label set counts in the families; the
    /// families' own lookup hashes the labels with SipHash, twice per request.
    pub fn request(&self, labels: RequestLabels, seconds: f64) {
        let kept = self.request_handles.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((count, latency)) = kept.get(&labels) {
            count.inc();
            latency.observe(seconds);
            return;
        }
        drop(kept);
        let count = self.requests.get_or_create(&labels).clone();
        let latency = self.latency.get_or_create(&RouteLabels { route: labels.route }).clone();
        count.inc();
        latency.observe(seconds);
        let mut kept = self.request_handles.write().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < MAX_REQUEST_HANDLES {
            kept.insert(labels, (count, latency));
        }
    }

    pub fn new(enabled: bool) -> Self {
        let mut m = Self {
            enabled,
            registry: Registry::with_prefix("portcullis"),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            authentications: Family::default(),
            security_events: Family::default(),
            logins: Family::default(),
            throttled: Family::default(),
            refresh_rotations: Counter::default(),
            reuse_detections: Counter::default(),
            hash_queue: Gauge::default(),
            hash_wait: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_entries: Gauge::default(),
            db_pool_size: Gauge::default(),
            db_pool_idle: Gauge::default(),
            audit_written: Counter::default(),
            audit_dropped: Counter::default(),
            emails: Family::default(),
            mfa_codes: Family::default(),
            request_handles: RwLock::default(),
        };
        let r = &mut m.registry;
        r.register("http_requests", "HTTP requests by route, method and status", m.requests.clone());
        r.register("http_request_duration_seconds", "HTTP request latency by route", m.latency.clone());
        r.register(
            "authentications",
            "Authenticator answers by authenticator, outcome and reason",
            m.authentications.clone(),
        );
        r.register("security_events", "Security events by type (the audit trail's events)", m.security_events.clone());
        r.register("logins", "Password checks by outcome (login, token, JWT, Basic)", m.logins.clone());
        r.register("throttled", "Requests refused by a throttle, by scope", m.throttled.clone());
        r.register("jwt_refresh_rotations", "Refresh tokens rotated", m.refresh_rotations.clone());
        r.register(
            "jwt_reuse_detections",
            "Rotated-away refresh tokens presented again (family revoked)",
            m.reuse_detections.clone(),
        );
        r.register("password_hash_queue", "Password hashes waiting for the bounded pool", m.hash_queue.clone());
        r.register("password_hash_wait_seconds", "Time a password hash waited for the pool", m.hash_wait.clone());
        r.register("credential_cache_hits", "Credentials resolved from the cache", m.cache_hits.clone());
        r.register("credential_cache_misses", "Credentials read from the database", m.cache_misses.clone());
        r.register("credential_cache_entries", "Credentials in the cache", m.cache_entries.clone());
        r.register("db_pool_connections", "Open database connections", m.db_pool_size.clone());
        r.register("db_pool_idle_connections", "Idle database connections", m.db_pool_idle.clone());
        r.register("audit_events_written", "Audit events written to the database", m.audit_written.clone());
        r.register("audit_events_dropped", "Audit events dropped because the queue was full", m.audit_dropped.clone());
        r.register("emails", "Recovery and test mails by kind and outcome (sent, failed, dropped)", m.emails.clone());
        r.register(
            "mfa_codes",
            "Second-factor codes checked, by method (totp, recovery_code) and outcome (success, failure)",
            m.mfa_codes.clone(),
        );
        m
    }

    /// The Prometheus text exposition, with the pool gauges read now.
    pub fn render(&self, db: &DatabaseConnection, cache_entries: usize) -> String {
        let (size, idle) = match db.get_database_backend() {
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        self.db_pool_size.set(i64::from(size));
        self.db_pool_idle.set(i64::try_from(idle).unwrap_or(i64::MAX));
        self.cache_entries.set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kept handles count in the families the registry renders, on the first request of a
    /// label set and after; a label set beyond the bound still counts.
    #[test]
    fn kept_request_metrics_count_in_the_families() {
        let metrics = Metrics::new(true);
        let labels = |status| RequestLabels { route: "/protected", method: "GET", status };
        for _ in 0..3 {
            metrics.request(labels(200), 0.001);
        }
        metrics.request(labels(401), 0.002);
        assert_eq!(metrics.requests.get_or_create(&labels(200)).get(), 3);
        assert_eq!(metrics.requests.get_or_create(&labels(401)).get(), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(text.contains(r#"portcullis_http_request_duration_seconds_count{route="/protected"} 4"#), "{text}");
        for status in 0..(MAX_REQUEST_HANDLES as u16 + 10) {
            metrics.request(labels(1000 + status), 0.0);
        }
        let beyond = labels(1000 + MAX_REQUEST_HANDLES as u16 + 5);
        metrics.request(beyond.clone(), 0.0);
        assert_eq!(metrics.requests.get_or_create(&beyond).get(), 2);
        assert_eq!(metrics.request_handles.read().unwrap().len(), MAX_REQUEST_HANDLES);
    }
}
