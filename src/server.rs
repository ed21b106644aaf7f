//! `portcullis serve`: migrate, listen, serve until SIGTERM/SIGINT, drain, exit 0.
use std::time::Duration;

use poem::{
    Server,
    listener::{Acceptor, Listener, TcpListener},
};

use crate::{
    app::build_app,
    config::Settings,
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

pub async fn serve(settings: Settings) -> Result<(), ServeError> {
    let db = store::open(&settings.database).await?;
    let bind = settings.server.bind;
    let drain = Duration::from_secs(settings.server.shutdown_timeout);
    let state = AppState::new(db.clone(), settings).await?;
    let state_events_flush = state.events.clone();
    // Listen for signals before announcing the address, so an early SIGTERM is graceful too.
    let shutdown = shutdown_signal()?;
    state.health.spawn_probe(db.clone());
    let acceptor = TcpListener::bind(bind).into_acceptor().await.map_err(|source| ServeError::Listen {
        addr: bind,
        what: "",
        source,
    })?;
    let metrics = spawn_metrics_listener(&state).await?;
    for addr in acceptor.local_addr().iter().filter_map(|a| a.as_socket_addr()) {
        tracing::info!("listening on http://{addr}");
    }
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(build_app(state), shutdown, Some(drain))
        .await
        .map_err(ServeError::Server)?;
    if let Some(task) = metrics {
        task.abort();
    }
    state_events_flush.flush().await;
    db.close().await.map_err(|e| ServeError::Open(store::OpenError::Connect(e)))?;
    tracing::info!("stopped");
    Ok(())
}

/// `metrics.bind`: `GET /metrics` on a listener of its own, off the public API.
async fn spawn_metrics_listener(state: &AppState) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    let Some(bind) = state.settings.metrics.bind else { return Ok(None) };
    let acceptor = TcpListener::bind(bind).into_acceptor().await.map_err(|source| ServeError::Listen {
        addr: bind,
        what: " (metrics.bind)",
        source,
    })?;
    for addr in acceptor.local_addr().iter().filter_map(|a| a.as_socket_addr()) {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    let app = crate::app::build_metrics_app(state);
    Ok(Some(tokio::spawn(async move {
        if let Err(e) = Server::new_with_acceptor(acceptor).run(app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    })))
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
