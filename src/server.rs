//! `portcullis serve`: migrate, listen, serve until SIGTERM/SIGINT, drain, exit 0.
use std::time::Duration;

use poem::{
    Server,
    listener::{Acceptor, Listener, TcpListener},
};

use crate::{app::build_app, config::Settings, state::AppState, store};

pub async fn serve(settings: Settings) -> Result<(), String> {
    let db = store::connect(&settings.database).await.map_err(|e| format!("cannot open the database: {e}"))?;
    store::migrate(&db).await.map_err(|e| format!("cannot migrate the database: {e}"))?;
    let bind = settings.server.bind.clone();
    let drain = Duration::from_secs(settings.server.shutdown_timeout);
    let state = AppState::new(db.clone(), settings).await?;
    let state_events_flush = state.events.clone();
    // Listen for signals before announcing the address, so an early SIGTERM is graceful too.
    let shutdown = shutdown_signal()?;
    state.health.spawn_probe(db.clone());
    let acceptor =
        TcpListener::bind(bind.as_str()).into_acceptor().await.map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let metrics = spawn_metrics_listener(&state).await?;
    for addr in acceptor.local_addr().iter().filter_map(|a| a.as_socket_addr()) {
        tracing::info!("listening on http://{addr}");
    }
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(build_app(state), shutdown, Some(drain))
        .await
        .map_err(|e| format!("server error: {e}"))?;
    if let Some(task) = metrics {
        task.abort();
    }
    state_events_flush.flush().await;
    db.close().await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// `metrics.bind`: `GET /metrics` on a listener of its own, off the public API.
async fn spawn_metrics_listener(state: &AppState) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let bind = state.settings.metrics.bind.clone();
    if bind.is_empty() {
        return Ok(None);
    }
    let acceptor = TcpListener::bind(bind.as_str())
        .into_acceptor()
        .await
        .map_err(|e| format!("cannot listen on {bind} (metrics.bind): {e}"))?;
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
fn shutdown_signal() -> Result<impl Future<Output = ()>, String> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
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
