//! What every request handler shares.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;

use crate::{
    audit::AuditSink,
    authn::cache::CredentialCache,
    config::{DefaultPermission, Settings, ThrottleBackend},
    events::Events,
    metrics::Metrics,
    net::TrustedProxies,
    password::{HashError, Passwords},
    permissions::Permission,
    service::{
        accounts::{Accounts, Parts, RecoveryParts},
        devices::Devices,
        identity::Origin,
        jwt::Jwt,
        throttles::RequestThrottles,
    },
    throttle::{EmailThrottle, LoginThrottle, RedisStore, Store},
};

/// What start-up needs and could not get.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Jwt(#[from] crate::service::jwt::KeyError),
    #[error(transparent)]
    Passwords(#[from] HashError),
    #[error("invalid throttle.redis_url: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot load a server secret (device cookies, email tokens): {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("the device cookie key is unusable")]
    DeviceKey,
    #[error("email: {0}")]
    Mail(#[from] crate::mail::MailError),
    #[error(transparent)]
    MfaKey(#[from] crate::service::mfa::key::KeyError),
}

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub passwords: Passwords,
    pub events: Events,
    /// The use cases: every account change goes through them.
    pub accounts: Accounts,
    /// DRF's AnonRateThrottle and UserRateThrottle.
    pub throttles: RequestThrottles,
    pub proxies: TrustedProxies,
    pub health: Health,
    pub default_permission: Permission,
    pub jwt: Arc<Jwt>,
    pub cache: Arc<CredentialCache>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub async fn new(db: DatabaseConnection, settings: Settings) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new(settings.metrics.enabled));
        let ttl = Duration::from_secs(settings.cache.ttl);
        let cache = Arc::new(CredentialCache::new(ttl, settings.cache.max_entries, Arc::clone(&metrics)));
        let audit = AuditSink::spawn(db.clone(), Arc::clone(&metrics), settings.audit.queue_capacity);
        // Several instances on one PostgreSQL tell each other of revocations.
        let notify = settings.cache.notify && db.get_database_backend() == sea_orm::DbBackend::Postgres;
        if notify {
            crate::authn::notify::spawn_listener(&db, Arc::clone(&cache));
        }
        let events = Events::new(cache.clone(), Arc::clone(&metrics), audit, notify.then(|| db.clone()));
        let passwords = Passwords::new(&settings.password, Arc::clone(&metrics))?;
        let (jwt, made) = Jwt::load(&settings.jwt, &db).await?;
        let jwt = Arc::new(jwt);
        crate::service::jwt::watch::spawn(&jwt, settings.cache.notify);
        if let Some(made) = made {
            crate::service::accounts::record_key_change(
                &events,
                &made,
                &Origin { via: Some("startup"), ..Origin::default() },
            )
            .await;
        }
        let throttle = Arc::new(login_throttle(&settings, &db)?);
        let device_key = crate::store::shared_secret(&db, Devices::SECRET_NAME).await?;
        let devices = Devices::new(&device_key).ok_or(StartError::DeviceKey)?;
        let mail = recovery_parts(&settings, &db, &metrics).await?;
        let mfa_key = mfa_key(&settings, &db).await?;
        let parts = Parts {
            db: db.clone(),
            passwords: passwords.clone(),
            throttle,
            devices,
            events: events.clone(),
            jwt: Arc::clone(&jwt),
            mail,
            mfa_key,
        };
        let accounts = Accounts::new(parts, &settings);
        Ok(Self {
            throttles: RequestThrottles::new(&settings.throttle, events.clone()),
            default_permission: match settings.auth.default_permission {
                DefaultPermission::AllowAny => Permission::AllowAny,
                DefaultPermission::IsAuthenticated => Permission::IsAuthenticated,
                DefaultPermission::IsAdminUser => Permission::IsAdminUser,
                DefaultPermission::IsAuthenticatedOrReadOnly => Permission::IsAuthenticatedOrReadOnly,
            },
            proxies: TrustedProxies::new(&settings.server.trusted_proxies),
            passwords,
            events,
            accounts,
            jwt,
            cache,
            metrics,
            settings: Arc::new(settings),
            health: Health::default(),
            db,
        })
    }
}

impl AppState {
    /// What the authenticators are built from.
    pub fn authn(&self) -> crate::authn::Deps {
        crate::authn::Deps {
            db: self.db.clone(),
            cache: Arc::clone(&self.cache),
            jwt: Arc::clone(&self.jwt),
            accounts: self.accounts.clone(),
            settings: Arc::clone(&self.settings),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The login throttle on the configured store (`throttle.backend`).
fn login_throttle(settings: &Settings, db: &DatabaseConnection) -> Result<LoginThrottle, StartError> {
    let t = &settings.throttle;
    Ok(LoginThrottle::with_store(t.login, t.login_ip_rate(), throttle_store(settings, db)?))
}

/// A counter store of `throttle.backend` (each throttle has its own; keys do not overlap).
fn throttle_store(settings: &Settings, db: &DatabaseConnection) -> Result<Store, StartError> {
    let t = &settings.throttle;
    Ok(match t.backend {
        ThrottleBackend::Database => Store::Database(db.clone()),
        ThrottleBackend::Redis => Store::Redis(RedisStore::new(t.redis_url.expose())?),
        ThrottleBackend::Memory => Store::memory(),
    })
}

/// The mailer and its queue, the token secret (shared by every instance) and the throttle.
async fn recovery_parts(
    settings: &Settings,
    db: &DatabaseConnection,
    metrics: &Arc<Metrics>,
) -> Result<RecoveryParts, StartError> {
    let email = &settings.email;
    let secret = crate::store::shared_secret(db, "email_tokens").await?;
    let timeout = settings.account.email_verification_timeout;
    Ok(RecoveryParts {
        mailer: crate::mail::Mailer::new(email)?,
        outbox: crate::mail::outbox::Outbox::spawn(email.queue_capacity, Arc::clone(metrics)),
        tokens: crate::service::email_tokens::EmailTokens::new(&secret, email.password_reset_timeout, timeout),
        throttle: EmailThrottle::new(email.throttle_address, email.throttle_ip, throttle_store(settings, db)?),
        metrics: Arc::clone(metrics),
    })
}

/// The key sealing TOTP secrets, and a warning when secrets in the database were sealed
/// under another one (those users can log in with recovery codes only until it is back).
async fn mfa_key(
    settings: &Settings,
    db: &DatabaseConnection,
) -> Result<Option<crate::service::mfa::key::MfaKey>, StartError> {
    use crate::service::mfa::{key, records};
    let key = key::load(&settings.mfa)?;
    let elsewhere = records::sealed_elsewhere(db, key.as_ref().map_or("", |k| k.id())).await?;
    match &key {
        _ if elsewhere == 0 => {}
        Some(key) => tracing::warn!(
            count = elsewhere,
            key_id = key.id(),
            "TOTP secrets sealed under another MFA key: their codes answer 503 (recovery codes still work) until \
             that key is back in mfa.key or mfa.key_file"
        ),
        None => tracing::warn!(
            count = elsewhere,
            key_file = settings.mfa.key_file.as_str(),
            "no MFA key (mfa.key, mfa.key_file) but TOTP secrets in the database: their codes answer 503"
        ),
    }
    Ok(key)
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
