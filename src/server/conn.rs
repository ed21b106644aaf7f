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
use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
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
    sync::watch,
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
    phase: watch::Sender<Phase>,
    timeouts: Timeouts,
}

impl Conn {
    /// A connection just accepted: its first request head is due within `header_timeout`.
    pub fn new(timeouts: Timeouts) -> Arc<Self> {
        let phase = Phase { busy: 0, waiting: Waiting::Head, since: Instant::now(), closing: false };
        Arc::new(Self { phase: watch::Sender::new(phase), timeouts })
    }

    /// Since when it has waited for a request, if it is not processing one (nor closing):
    /// the connection the cap may close, the one that has waited longest first.
    pub fn waiting_since(&self) -> Option<Instant> {
        let phase = self.phase.borrow();
        (phase.busy == 0 && !phase.closing).then_some(phase.since)
    }

    /// Closes it now, unless a request is being processed.
    pub fn close(&self) {
        self.phase.send_modify(|p| p.closing = true);
    }

    fn on_read(&self) {
        // The first byte of the next request: its head is due within header_timeout from now.
        self.phase.send_if_modified(|p| {
            let starts = p.busy == 0 && p.waiting == Waiting::Idle;
            if starts {
                p.waiting = Waiting::Head;
                p.since = Instant::now();
            }
            starts
        });
    }

    fn on_write(&self) {
        // A response still being written to a slow reader is not idle yet.
        self.phase.send_if_modified(|p| {
            let idle = p.busy == 0 && p.waiting == Waiting::Idle;
            if idle {
                p.since = Instant::now();
            }
            idle
        });
    }

    /// Resolves when the connection must close, with the reason.
    async fn watchdog(&self) -> &'static str {
        let mut phase_rx = self.phase.subscribe();
        // One timer, moved as the phase changes (twice a request), not one made per change.
        let deadline = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(deadline);
        loop {
            let phase = *phase_rx.borrow_and_update();
            if phase.closing && phase.busy == 0 {
                return "closed to make room for a new connection";
            }
            // `self` holds the sender, so `changed` cannot fail.
            let changed = phase_rx.changed();
            if phase.busy > 0 {
                let _ = changed.await;
                continue;
            }
            let (limit, reason) = match phase.waiting {
                Waiting::Head => (self.timeouts.header, "request head not received within server.header_timeout"),
                Waiting::Idle => (self.timeouts.keep_alive, "idle for server.keep_alive_timeout"),
            };
            deadline.as_mut().reset(phase.since + limit);
            tokio::select! {
                () = &mut deadline => return reason,
                _ = changed => {}
            }
        }
    }
}

/// Marks the connection busy while a request is processed.
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: &Arc<Conn>) -> Self {
        conn.phase.send_modify(|p| p.busy += 1);
        Self(Arc::clone(conn))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.phase.send_modify(|p| {
            p.busy = p.busy.saturating_sub(1);
            if p.busy == 0 {
                p.waiting = Waiting::Idle;
                p.since = Instant::now();
            }
        });
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
                Ok::<_, Infallible>(hyper::Response::from(endpoint.get_response(req).await))
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
