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
    let state = AppState::new(db.clone(), settings)?;
    state.health.spawn_probe(db.clone());
    let acceptor = TcpListener::bind(bind.as_str())
        .into_acceptor()
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    for addr in acceptor.local_addr().iter().filter_map(|a| a.as_socket_addr()) {
        tracing::info!("listening on http://{addr}");
    }
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(build_app(state), shutdown_signal(), Some(drain))
        .await
        .map_err(|e| format!("server error: {e}"))?;
    db.close().await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
