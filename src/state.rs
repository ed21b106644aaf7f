//! What every request handler shares.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::DatabaseConnection;

use crate::{config::Settings, events::Events, net::TrustedProxies, password::Passwords};

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub passwords: Passwords,
    pub events: Events,
    pub proxies: TrustedProxies,
    pub health: Health,
}

impl AppState {
    pub fn new(db: DatabaseConnection, settings: Settings) -> Result<Self, String> {
        Ok(Self {
            passwords: Passwords::new(&settings.password)?,
            proxies: TrustedProxies::new(&settings.server.trusted_proxies),
            settings: Arc::new(settings),
            events: Events,
            health: Health::default(),
            db,
        })
    }
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
