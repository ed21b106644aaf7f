//! One connection: hyper serves it, a watchdog closes it when the client keeps it waiting.
//!
//! The connection's [`Phase`] says what it waits for: a request head (`server.header_timeout`,
//! from the connection's opening or from the first byte of a later request), the next request
//! (`server.keep_alive_timeout`, from the end of a response), or nothing while a request is
//! being processed — a slow handler is not a slow client. Requests mark the phase busy; the
//! socket wrapper ([`Watched`]) sees the first byte of the next request. The request body has
//! a deadline of its own (`server.body_timeout`) in the request, so that it is answered with a
//! DRF error rather than cut off.
//!
//! Why not hyper's `http1::Builder::header_read_timeout`: it only times HTTP/1 heads. Before
//! hyper-util's auto builder has picked HTTP/1 or HTTP/2 it reads the connection preface with
//! no timeout (a client that sends `PRI * HT` and stops would be held forever), and it has no
//! notion of idle keep-alive time apart from heads. One watchdog covers every wait alike.
//!
//! The phase changes several times a request; nothing is woken for it. The watchdog sleeps
//! until the deadline it last computed and, when it wakes, re-reads the phase: a deadline
//! that has moved on is slept to again, so a timeout still fires on time, and a busy
//! connection costs one wake-up per `min(header_timeout, keep_alive_timeout)`, not four per
//! request (a `watch` channel did that: 8 % of a `/healthz` request's instructions).
use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::StreamExt;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use poem::{
    Body, Endpoint, Request, Response,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{Notify, watch},
    time::Instant,
};

/// `server.header_timeout`, `keep_alive_timeout` and `body_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub keep_alive: Duration,
    pub body: Duration,
}

/// Where the server is in its life: connections finish their request and close when
/// draining, and are dropped when closing (`server.shutdown_timeout` has passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Serving,
    Draining,
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Head,
    Idle,
}

/// What a connection waits for, and since when.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// Requests being processed (more than one only with HTTP/2).
    busy: u32,
    waiting: Waiting,
    since: Instant,
    /// Told to close: [`Conn::close`].
    closing: bool,
}

/// A connection's state, shared by its socket, its requests, its watchdog and the cap.
pub struct Conn {
    phase: Mutex<Phase>,
    /// Wakes the watchdog for the one change it must not wait for: being told to close.
    told: Notify,
    timeouts: Timeouts,
}

impl Conn {
    /// A connection just accepted: its first request head is due within `header_timeout`.
    pub fn new(timeouts: Timeouts) -> Arc<Self> {
        let phase = Phase { busy: 0, waiting: Waiting::Head, since: Instant::now(), closing: false };
        Arc::new(Self { phase: Mutex::new(phase), told: Notify::new(), timeouts })
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // Held for a few instructions, never across an await; a poisoned lock's data is a
        // plain Copy value, still right.
        self.phase.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Since when it has waited for a request, if it is not processing one (nor closing):
    /// the connection the cap may close, the one that has waited longest first.
    pub fn waiting_since(&self) -> Option<Instant> {
        let phase = self.phase();
        (phase.busy == 0 && !phase.closing).then_some(phase.since)
    }

    /// Closes it now, unless a request is being processed.
    pub fn close(&self) {
        self.phase().closing = true;
        self.told.notify_one();
    }

    fn on_read(&self) {
        // The first byte of the next request: its head is due within header_timeout from now.
        let mut p = self.phase();
        if p.busy == 0 && p.waiting == Waiting::Idle {
            p.waiting = Waiting::Head;
            p.since = Instant::now();
        }
    }

    fn on_write(&self) {
        // A response still being written to a slow reader is not idle yet.
        let mut p = self.phase();
        if p.busy == 0 && p.waiting == Waiting::Idle {
            p.since = Instant::now();
        }
    }

    /// Resolves when the connection must close, with the reason.
    async fn watchdog(&self) -> &'static str {
        // A request that ends starts a wait of at least this long, so looking again this
        // often while one is in progress never misses a deadline.
        // (Never zero: the settings refuse a zero timeout, and a zero here would spin.)
        let recheck = self.timeouts.header.min(self.timeouts.keep_alive).max(Duration::from_millis(1));
        // One timer, re-armed, not one made per look.
        let sleep = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(sleep);
        loop {
            let phase = *self.phase();
            if phase.closing && phase.busy == 0 {
                return "closed to make room for a new connection";
            }
            let now = Instant::now();
            let (wake, expired) = if phase.busy > 0 {
                (now + recheck, None)
            } else {
                let (limit, reason) = match phase.waiting {
                    Waiting::Head => (self.timeouts.header, "request head not received within server.header_timeout"),
                    Waiting::Idle => (self.timeouts.keep_alive, "idle for server.keep_alive_timeout"),
                };
                (phase.since + limit, Some(reason))
            };
            if let Some(reason) = expired
                && wake <= now
            {
                return reason;
            }
            sleep.as_mut().reset(wake);
            tokio::select! {
                () = &mut sleep => {}
                () = self.told.notified() => {}
            }
        }
    }
}

/// Marks the connection busy while a request is processed.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Self {
        conn.phase().busy += 1;
        Self(Arc::clone(conn))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        p.busy = p.busy.saturating_sub(1);
        if p.busy == 0 {
            p.waiting = Waiting::Idle;
            p.since = Instant::now();
            if p.closing {
                // Told to close while this request was in progress: now it can.
                drop(p);
                self.0.told.notify_one();
            }
        }
    }
}

/// Serves one accepted connection until it ends, times out, is closed to make room, or the
/// server stops.
pub async fn serve<E>(
    stream: TcpStream,
    (local, peer): (SocketAddr, SocketAddr),
    endpoint: Arc<E>,
    conn: Arc<Conn>,
    mut stage: watch::Receiver<Stage>,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let service = hyper::service::service_fn({
        let conn = Arc::clone(&conn);
        move |req| {
            let (endpoint, conn) = (Arc::clone(&endpoint), Arc::clone(&conn));
            async move {
                let _busy = Busy::start(&conn);
                let mut req = Request::from((req, LocalAddr(local.into()), RemoteAddr(peer.into()), Scheme::HTTP));
                let body = req.take_body();
                if !body.is_empty() {
                    req.set_body(with_deadline(body, conn.timeouts.body));
                }
                // `get_response` without its `async` wrapper, nor `Arc`'s: each would hold the
                // request beside the application's future, and be moved with it.
                let resp = endpoint.as_ref().call(req).await.unwrap_or_else(|e| e.into_response());
                Ok::<_, Infallible>(hyper::Response::from(resp))
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog times heads (see the module docs); hyper's timer is not set.
    builder.http1().header_read_timeout(None);
    let io = TokioIo::new(Watched { inner: stream, conn: Arc::clone(&conn) });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let watchdog = conn.watchdog();
    tokio::pin!(watchdog);
    tokio::select! {
        _ = connection.as_mut() => return,
        reason = &mut watchdog => {
            tracing::debug!(%peer, reason, "closing connection");
            return;
        }
        _ = stage.wait_for(|s| *s != Stage::Serving) => connection.as_mut().graceful_shutdown(),
    }
    // Stopping: a request in progress finishes, an idle connection closes at once (hyper),
    // a head still arriving gets its header_timeout.
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = &mut watchdog => {}
        _ = stage.wait_for(|s| *s == Stage::Closing) => {}
    }
}

/// The body as it arrives, failing with `TimedOut` if it is not complete by the deadline
/// (`api::body` answers 408). Dropping it makes hyper close the connection after the answer.
fn with_deadline(body: Body, limit: Duration) -> Body {
    let deadline = Instant::now() + limit;
    let chunks = Some(Box::pin(body.into_bytes_stream()));
    Body::from_bytes_stream(futures_util::stream::unfold(chunks, move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => {
                let why = format!("The request body was not received within {} seconds.", limit.as_secs());
                Some((Err(io::Error::new(io::ErrorKind::TimedOut, why)), None))
            }
        }
    }))
}

/// The socket, telling its [`Conn`] when bytes come and go.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(ms: u64) -> Arc<Conn> {
        let t = Duration::from_millis(ms);
        Conn::new(Timeouts { header: t, keep_alive: t * 2, body: t })
    }

    async fn expires_within(conn: &Conn, ms: u64) -> Option<&'static str> {
        tokio::time::timeout(Duration::from_millis(ms), conn.watchdog()).await.ok()
    }

    #[tokio::test]
    async fn the_watchdog_times_heads_and_idleness_but_never_a_request_in_progress() {
        let fresh = conn(50);
        assert!(expires_within(&fresh, 20).await.is_none());
        assert!(expires_within(&fresh, 100).await.unwrap().contains("header_timeout"));

        let busy = conn(50);
        let request = Busy::start(&busy);
        assert!(expires_within(&busy, 150).await.is_none(), "a slow handler is not a slow client");
        assert_eq!(busy.waiting_since(), None, "nor is it closed to make room");
        drop(request);
        assert!(expires_within(&busy, 200).await.unwrap().contains("keep_alive_timeout"));

        let told = conn(10_000);
        told.close();
        assert!(expires_within(&told, 50).await.unwrap().contains("make room"));

        // Told while a request is in progress: it finishes, then the connection closes at once
        // (not at the next periodic look, 10 s away here).
        let busy_when_told = conn(10_000);
        let request = Busy::start(&busy_when_told);
        busy_when_told.close();
        let watchdog = tokio::spawn({
            let conn = Arc::clone(&busy_when_told);
            async move { expires_within(&conn, 1_000).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!watchdog.is_finished(), "a request in progress is never cut");
        drop(request);
        assert!(watchdog.await.unwrap().unwrap().contains("make room"));

        // A deadline that moved while the watchdog slept (a request came and went) is slept
        // to again, not fired early: a connection kept busy every 30 ms never times out.
        let lively = conn(50);
        let pinger = tokio::spawn({
            let conn = Arc::clone(&lively);
            async move {
                for _ in 0..8 {
                    conn.on_read();
                    drop(Busy::start(&conn));
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        });
        assert!(expires_within(&lively, 200).await.is_none());
        pinger.await.unwrap();
        assert!(expires_within(&lively, 300).await.unwrap().contains("keep_alive_timeout"));
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_fails_with_timed_out_at_its_deadline() {
        let stalled = Body::from_bytes_stream(
            futures_util::stream::iter([Ok::<_, io::Error>(bytes::Bytes::from_static(b"{\"a\""))])
                .chain(futures_util::stream::pending()),
        );
        let started = Instant::now();
        // As api::body reads it (into_bytes would box the error and lose its kind).
        let err = with_deadline(stalled, Duration::from_millis(50)).into_bytes_limit(1024).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        let poem::error::ReadBodyError::Io(err) = err else { panic!("{err:?}") };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let whole = with_deadline(Body::from(&b"{}"[..]), Duration::from_millis(50)).into_bytes().await.unwrap();
        assert_eq!(&whole[..], b"{}");
    }
}
