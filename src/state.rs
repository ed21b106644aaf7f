//! What every request handler shares.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;

use crate::{
    audit::AuditSink,
    authn::{Chain, cache::CredentialCache},
    config::Settings,
    events::Events,
    metrics::Metrics,
    net::TrustedProxies,
    password::Passwords,
    permissions::Permission,
    throttle::{LoginThrottle, Rate, RedisStore, Store, Window},
};

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub passwords: Passwords,
    pub events: Events,
    pub proxies: TrustedProxies,
    pub health: Health,
    pub login_throttle: Arc<LoginThrottle>,
    /// DRF's AnonRateThrottle and UserRateThrottle.
    pub anon_throttle: Arc<Window>,
    pub user_throttle: Arc<Window>,
    pub default_permission: Permission,
    pub jwt: Arc<crate::service::jwt::Jwt>,
    pub cache: Arc<CredentialCache>,
    pub metrics: Arc<Metrics>,
    /// `auth.chain`, and the per-endpoint chains, built once.
    pub chains: Arc<HashMap<Vec<String>, Chain>>,
}

impl AppState {
    pub async fn new(db: DatabaseConnection, settings: Settings) -> Result<Self, String> {
        let rate = |s: &str| Rate::parse(s);
        let metrics = Arc::new(Metrics::new(settings.metrics.enabled));
        let cache =
            Arc::new(CredentialCache::new(std::time::Duration::from_secs(settings.cache.ttl), Arc::clone(&metrics)));
        let audit = AuditSink::spawn(db.clone(), Arc::clone(&metrics), settings.audit.queue_capacity);
        // Several instances on one PostgreSQL tell each other of revocations.
        let notify = settings.cache.notify && db.get_database_backend() == sea_orm::DbBackend::Postgres;
        if notify {
            crate::authn::notify::spawn_listener(&db, Arc::clone(&cache));
        }
        let t = &settings.throttle;
        let mut state = Self {
            passwords: Passwords::new(&settings.password, Arc::clone(&metrics))?,
            proxies: TrustedProxies::new(&settings.server.trusted_proxies),
            login_throttle: Arc::new(login_throttle(&settings, &db)?),
            anon_throttle: Arc::new(Window::new(rate(&t.anon)?)),
            user_throttle: Arc::new(Window::new(rate(&t.user)?)),
            default_permission: Permission::from_name(&settings.auth.default_permission)
                .ok_or("unknown auth.default_permission")?,
            chains: Arc::new(HashMap::new()),
            jwt: Arc::new(crate::service::jwt::Jwt::load(&settings.jwt, &db).await?),
            cache: Arc::clone(&cache),
            events: Events::new(Arc::clone(&cache), Arc::clone(&metrics), audit, notify.then(|| db.clone())),
            metrics,
            settings: Arc::new(settings),
            health: Health::default(),
            db,
        };
        let mut chains = HashMap::new();
        let default = state.settings.auth.chain.clone();
        let overrides =
            crate::api::policy::chain_overrides().map(|names| names.iter().map(|n| n.to_string()).collect());
        for names in std::iter::once(default).chain(overrides) {
            let chain = Chain::from_names(&names, &state)?;
            chains.insert(names, chain);
        }
        state.chains = Arc::new(chains);
        Ok(state)
    }

    /// The chain a view runs: its own list of authenticators, or `auth.chain`.
    pub fn chain(&self, names: Option<&[&str]>) -> Option<&Chain> {
        match names {
            Some(names) => self.chains.get(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
            None => self.chains.get(&self.settings.auth.chain),
        }
    }
}

/// The login throttle on the configured store (`throttle.backend`).
fn login_throttle(settings: &Settings, db: &DatabaseConnection) -> Result<LoginThrottle, String> {
    let t = &settings.throttle;
    let (per_user, per_ip) = (Rate::parse(&t.login)?, Rate::parse(&t.login_ip)?);
    let store = match t.backend.as_str() {
        "database" => Store::Database(db.clone()),
        "redis" => Store::Redis(RedisStore::new(t.redis_url.expose())?),
        _ => return Ok(LoginThrottle::new(per_user, per_ip)),
    };
    Ok(LoginThrottle::with_store(per_user, per_ip, store))
}

/// Whether the database answered its last probe. Probed in the background about once a
/// second, so `/healthz` never touches the database itself.
#[derive(Clone)]
pub struct Health(Arc<AtomicBool>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Health {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Starts the probe; it stops when the runtime does.
    pub fn spawn_probe(&self, db: DatabaseConnection) {
        let flag = Arc::clone(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let ok = matches!(tokio::time::timeout(Duration::from_secs(2), db.ping()).await, Ok(Ok(())));
                if flag.swap(ok, Ordering::Relaxed) != ok {
                    if ok {
                        tracing::info!("database is answering again");
                    } else {
                        tracing::warn!("database probe failed");
                    }
                }
            }
        });
    }
}
