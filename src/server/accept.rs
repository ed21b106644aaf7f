//! The accept loop: a slot per connection (`server.max_connections`), and a pause when accept
//! fails for want of resources.
//!
//! poem's own loop retries a failed accept at once; out of file descriptors (EMFILE), the
//! listener stays readable and every retry fails the same way, so the loop burns a core while
//! no one is served. Here such a failure closes the connection that has waited longest for a
//! request, to free a descriptor, and waits for it to close or for `server.accept_backoff_ms`
//! (nginx likewise stops accepting for 500 ms). Errors that concern only the connection being
//! accepted (reset or aborted by the client before accept) are skipped at once, as hyper did.
use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use poem::{Endpoint, Response};
use tokio::{net::TcpListener, sync::watch};

use super::{
    Limits,
    conn::{self, Conn, Stage},
    slots::Slots,
};

/// Accepts connections on `listener` and serves them until the stage leaves `Serving`.
pub async fn run<E>(
    listener: TcpListener,
    endpoint: E,
    slots: Arc<Slots>,
    limits: Limits,
    stage: watch::Receiver<Stage>,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let endpoint = Arc::new(endpoint);
    let mut failures = Failures::default();
    let mut stopping = stage.clone();
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s != Stage::Serving) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if concerns_one_connection(&e) => continue,
            Err(e) => {
                failures.record(&e, limits.accept_backoff);
                back_off(&slots, limits.accept_backoff).await;
                continue;
            }
        };
        let Ok(local) = stream.local_addr() else { continue };
        let conn = Conn::new(limits.timeouts);
        let slot = tokio::select! {
            _ = stopping.wait_for(|s| *s != Stage::Serving) => return,
            slot = slots.admit(&conn, limits.accept_backoff) => slot,
        };
        let (endpoint, stage) = (Arc::clone(&endpoint), stage.clone());
        tokio::spawn(async move {
            conn::serve(stream, (local, peer), endpoint, conn, stage).await;
            // After the socket is closed: the slot (and the descriptor) are free together.
            drop(slot);
        });
    }
}

fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    )
}

/// After a failed accept: free a descriptor if an idle connection can give one up, and wait
/// for it to close, or for `pause`.
async fn back_off(slots: &Slots, pause: Duration) {
    let closed = slots.next_close();
    if slots.close_longest_waiting() {
        let _ = tokio::time::timeout(pause, closed).await;
    } else {
        tokio::time::sleep(pause).await;
    }
}

/// A warning at most every ten seconds, with the count: under a flood each failed accept is
/// followed by a successful one (the descriptor freed), so "one per run" would be one per
/// connection.
#[derive(Default)]
struct Failures {
    unreported: u64,
    last_warned: Option<Instant>,
}

impl Failures {
    fn record(&mut self, e: &io::Error, pause: Duration) {
        self.unreported += 1;
        if self.last_warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(
                error = %e,
                failures = self.unreported,
                "accept failed (out of file descriptors? see server.max_connections): closing the connection \
                 waiting longest for a request, pausing up to {pause:?} before the next accept",
            );
            self.unreported = 0;
            self.last_warned = Some(Instant::now());
        }
    }
}
