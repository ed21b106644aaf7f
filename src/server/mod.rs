//! `portcullis serve`: migrate, listen, serve until SIGTERM/SIGINT, drain, exit 0.
//!
//! Connections are accepted and served here rather than by poem's `Server`, whose loop
//! exposes neither hyper's connection builder nor accept errors: the `[server]` limits
//! (timeouts, `max_connections`, the accept back-off) live in [`accept`], [`slots`] and
//! [`conn`]. Requests still go through the poem application unchanged.
mod accept;
mod conn;
mod slots;

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use self::{
    conn::{Stage, Timeouts},
    slots::Slots,
};
use crate::{
    app::build_app,
    config::{self, Settings},
    state::{AppState, StartError},
    store,
};

/// Why the server could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] store::OpenError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}{what}: {source}")]
    Listen { addr: std::net::SocketAddr, what: &'static str, source: std::io::Error },
    #[error("cannot listen for SIGTERM: {0}")]
    Signal(std::io::Error),
    #[error("server error: {0}")]
    Server(std::io::Error),
}

/// The `[server]` limits, as the accept loop and connections use them.
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeouts: Timeouts,
    max_connections: usize,
    accept_backoff: Duration,
}

impl From<&config::Server> for Limits {
    fn from(server: &config::Server) -> Self {
        Self {
            timeouts: Timeouts {
                header: Duration::from_secs(server.header_timeout),
                keep_alive: Duration::from_secs(server.keep_alive_timeout),
                body: Duration::from_secs(server.body_timeout),
            },
            max_connections: server.max_connections,
            accept_backoff: Duration::from_millis(server.accept_backoff_ms),
        }
    }
}

/// The embedded default (SQLite, one instance) makes its MFA key file at first start; on
/// PostgreSQL every instance must share one key, so none is made for it.
fn ensure_mfa_key(settings: &Settings, db: &sea_orm::DatabaseConnection) -> Result<(), StartError> {
    let mfa = &settings.mfa;
    if !mfa.key.expose().is_empty() || db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Ok(());
    }
    if crate::service::mfa::key::create_file(std::path::Path::new(&mfa.key_file))? {
        tracing::info!(
            key_file = mfa.key_file.as_str(),
            "created the MFA key file (mode 0600): back it up apart from the database"
        );
    }
    Ok(())
}

pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let db = store::open(&settings.database).await?;
    let bind = settings.server.bind;
    let drain = Duration::from_secs(settings.server.shutdown_timeout);
    let limits = Limits::from(&settings.server);
    if settings.jwt.algorithm == crate::config::JwtAlgorithm::RS256 {
        // The only RSA implementation in jsonwebtoken's rust_crypto backend has an open
        // advisory about timing on private-key operations; verifying is not affected.
        tracing::warn!(
            "jwt.algorithm = \"RS256\" signs with the rsa crate (RUSTSEC-2023-0071: timing side channel \
             on private-key operations, no fixed release); prefer \"EdDSA\" or \"ES256\" unless a \
             verifier needs RS256"
        );
    }
    ensure_mfa_key(&settings, &db)?;
    let state = AppState::new(db.clone(), settings).await?;
    let state_events_flush = state.events.clone();
    // Listen for signals before announcing the address, so an early SIGTERM is graceful too.
    let shutdown = shutdown_signal()?;
    state.health.spawn_probe(db.clone());
    let listener = listen(bind, "").await?;
    warn_if_above_file_limit(limits.max_connections);
    // One cap for both listeners: they share the process's file descriptors.
    let slots = Slots::new(limits.max_connections);
    let (stage, stage_rx) = watch::channel(Stage::Serving);
    let metrics = spawn_metrics_listener(&state, &slots, limits, &stage_rx).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    let api = tokio::spawn(accept::run(listener, build_app(state), Arc::clone(&slots), limits, stage_rx));
    shutdown.await;
    stage.send_replace(Stage::Draining);
    if tokio::time::timeout(drain, slots.all_closed()).await.is_err() {
        tracing::warn!(open = slots.open(), "server.shutdown_timeout passed: closing the connections still open");
        stage.send_replace(Stage::Closing);
        let _ = tokio::time::timeout(Duration::from_secs(1), slots.all_closed()).await;
    }
    for task in [Some(api), metrics].into_iter().flatten() {
        task.await.map_err(|e| ServeError::Server(std::io::Error::other(e)))?;
    }
    state_events_flush.flush().await;
    db.close().await.map_err(|e| ServeError::Open(store::OpenError::Connect(e)))?;
    tracing::info!("stopped");
    Ok(())
}

async fn listen(addr: std::net::SocketAddr, what: &'static str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| ServeError::Listen { addr, what, source })
}

/// `metrics.bind`: `GET /metrics` on a listener of its own, off the public API.
async fn spawn_metrics_listener(
    state: &AppState,
    slots: &Arc<Slots>,
    limits: Limits,
    stage: &watch::Receiver<Stage>,
) -> Result<Option<JoinHandle<()>>, ServeError> {
    let Some(bind) = state.settings.metrics.bind else { return Ok(None) };
    let listener = listen(bind, " (metrics.bind)").await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let app = crate::app::build_metrics_app(state);
    Ok(Some(tokio::spawn(accept::run(listener, app, Arc::clone(slots), limits, stage.clone()))))
}

/// Accept fails with EMFILE before the cap is reached if the cap is above the open-file
/// limit (less what the database pool, log and database files need): say so at start.
fn warn_if_above_file_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes only the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return;
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
        let files = limit.rlim_cur as u64;
        if max_connections as u64 + 64 > files {
            tracing::warn!(
                "server.max_connections is {max_connections} but the open-file limit (ulimit -n) is {files}: \
                 raise the limit or lower server.max_connections to at most {}",
                files.saturating_sub(64)
            );
        }
    }
}

/// Installs the handlers now; the future resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl Future<Output = ()>, ServeError> {
    #[cfg(unix)]
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(ServeError::Signal)?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing in-flight requests");
    })
}
