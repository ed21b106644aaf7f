//! The `[server]` limits against slow clients, on the real binary and raw sockets: the
//! header, keep-alive and body timeouts, the connection cap, and accept's back-off when the
//! process is out of file descriptors.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{helpers::TestDb, process::Served};

const HALF_HEADERS: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: portcullis\r\nX-Slow: ";

fn start(limits: &[(&str, &str)]) -> (tempfile::TempDir, TestDb, Served) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new();
    let mut env = db.env();
    env.extend(limits.iter().map(|(key, value)| (*key, (*value).to_owned())));
    let served = Served::start(dir.path(), &env, &["--bind", "127.0.0.1:0"]);
    (dir, db, served)
}

fn address(served: &Served) -> SocketAddr {
    served.base.trim_start_matches("http://").parse().unwrap()
}

/// Reads until the server closes the connection (or resets it); what it sent, and when.
/// Panics if it is still open at `deadline`.
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin), started: Instant, deadline: Duration) -> (String, f64) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + deadline).into(), stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {deadline:?}, having sent back {:?}", String::from_utf8_lossy(&got)),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), started.elapsed().as_secs_f64()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Opens a connection, sends `bytes`, and waits for the server to close it.
async fn send_then_wait(addr: SocketAddr, bytes: &[u8], deadline: Duration) -> (String, f64) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    until_closed(&mut stream, started, deadline).await
}

/// The classic slowloris: one more header byte every 200 ms, so the connection is never
/// silent; the head must still be complete within `server.header_timeout`.
async fn trickle(addr: SocketAddr, deadline: Duration) -> (String, f64) {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for byte in HALF_HEADERS.iter().chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let closed = until_closed(&mut read, started, deadline).await;
    writer.abort();
    closed
}

#[tokio::test]
async fn slow_heads_bodies_and_idle_connections_are_closed_after_their_timeouts() {
    let (_dir, _db, served) = start(&[
        ("PORTCULLIS_SERVER__HEADER_TIMEOUT", "1"),
        ("PORTCULLIS_SERVER__KEEP_ALIVE_TIMEOUT", "1"),
        ("PORTCULLIS_SERVER__BODY_TIMEOUT", "1"),
    ]);
    let addr = address(&served);
    // Each timeout is 1 s; the server must have closed the connection 2 s later at most.
    let bound = Duration::from_secs(3);
    let body = b"POST /login/ HTTP/1.1\r\nHost: portcullis\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{\"username\": \"jo";
    let (half_line, half_headers, trickled, half_body, idle) = tokio::join!(
        send_then_wait(addr, b"GET /heal", bound),
        send_then_wait(addr, HALF_HEADERS, bound),
        trickle(addr, bound),
        send_then_wait(addr, body, bound),
        send_then_wait(addr, b"GET /healthz HTTP/1.1\r\nHost: portcullis\r\n\r\n", bound),
    );
    for (what, (answer, after)) in
        [("half a request line", &half_line), ("half the headers", &half_headers), ("a trickled head", &trickled)]
    {
        assert!(answer.is_empty(), "{what}: closed without an answer, got {answer:?}");
        assert!(*after >= 0.9, "{what}: closed by the header timeout, not before ({after:.2} s)");
    }
    let (answer, after) = half_body;
    assert!(answer.starts_with("HTTP/1.1 408"), "a body that stops arriving: {answer}");
    assert!(answer.contains(r#"{"detail":"#), "DRF's shape: {answer}");
    assert!(after >= 0.9, "closed by the body timeout ({after:.2} s)");
    let (answer, after) = idle;
    assert!(answer.starts_with("HTTP/1.1 200"), "answered before idling: {answer}");
    assert!(after >= 0.9, "kept alive for server.keep_alive_timeout ({after:.2} s)");
    eprintln!(
        "closed after: half line {:.2} s, half headers {:.2} s, trickle {:.2} s, half body {after_body:.2} s, \
         idle {after:.2} s",
        half_line.1,
        half_headers.1,
        trickled.1,
        after_body = half_body.1,
    );
}

/// Sockets the process holds (the listener, its clients' connections, tokio's signal pipe).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Times three `GET /healthz` on fresh connections; the slowest, in seconds.
async fn slowest_healthz(base: &str) -> f64 {
    let mut slowest: f64 = 0.0;
    for _ in 0..3 {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let started = Instant::now();
        let res = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        slowest = slowest.max(started.elapsed().as_secs_f64());
    }
    slowest
}

async fn slow_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(HALF_HEADERS).await.unwrap();
        held.push(stream);
    }
    held
}

#[tokio::test]
async fn healthz_answers_fast_while_more_slow_clients_than_the_cap_are_connected() {
    // A header timeout longer than the test: only the cap can free room here.
    let (_dir, _db, served) =
        start(&[("PORTCULLIS_SERVER__MAX_CONNECTIONS", "50"), ("PORTCULLIS_SERVER__HEADER_TIMEOUT", "30")]);
    let addr = address(&served);
    let pid = served.child.id();
    let before = open_sockets(pid);
    // A request whose body is still arriving is being served: the cap must not close it.
    // (`100 Continue` comes when the handler starts reading the body: it is being served.)
    let body = r#"{"username": "a", "password": "b"}"#;
    let head = format!(
        "POST /login/ HTTP/1.1\r\nHost: p\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    busy.write_all(&body.as_bytes()[..5]).await.unwrap();
    let held = slow_clients(addr, 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slowest = slowest_healthz(&served.base).await;
    let during = open_sockets(pid);
    busy.write_all(&body.as_bytes()[5..]).await.unwrap();
    let (answer, _) = until_closed(&mut busy, Instant::now(), Duration::from_secs(5)).await;
    eprintln!("200 slow clients, cap 50: slowest /healthz {slowest:.3} s; sockets {before} before, {during} during");
    assert!(slowest < 1.0, "/healthz took {slowest:.3} s");
    assert!(during <= before + 50, "at most server.max_connections: {before} before, {during} during");
    assert!(answer.starts_with("HTTP/1.1 4") && answer.contains("Invalid"), "the busy request was answered: {answer}");
    drop(held);
}

/// CPU seconds the process has used (user + system), from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_second: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    ticks as f64 / per_second
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_healthz_still_answers() {
    let (_dir, _db, served) =
        start(&[("PORTCULLIS_SERVER__MAX_CONNECTIONS", "1000"), ("PORTCULLIS_SERVER__HEADER_TIMEOUT", "30")]);
    let addr = address(&served);
    let pid = served.child.id();
    slowest_healthz(&served.base).await;
    // Room for 20 more descriptors, then accept fails with EMFILE.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let limit = format!("--nofile={}:{}", open + 20, open + 20);
    let status = std::process::Command::new("prlimit").args(["--pid", &pid.to_string(), &limit]).status().unwrap();
    assert!(status.success(), "prlimit {limit}");
    let held = slow_clients(addr, 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu_before, started) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    eprintln!("out of descriptors: {cpu:.2} CPU-s in {wall:.2} s");
    assert!(cpu < 0.3, "the accept loop spins: {cpu:.2} CPU-s in {wall:.2} s");
    let slowest = slowest_healthz(&served.base).await;
    eprintln!("out of descriptors: slowest /healthz {slowest:.3} s");
    assert!(slowest < 2.0, "/healthz took {slowest:.3} s");
    drop(held);
}
