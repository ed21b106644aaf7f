//! Where log lines go: one buffer in front of standard error, and the request log line.
//!
//! Every request writes one line (`target: portcullis::request`). Through `tracing`'s
//! formatter and one `write(2)` each, those lines cost a sixth of a `/healthz` request. So:
//! - request lines are formatted here, straight into a reused per-thread buffer (integers
//!   with `itoa`, the timestamp's date and time made once a second), in the layout of
//!   `tracing_subscriber`'s default format, so that a line reads as before;
//! - they are appended to one shared buffer, written out by a thread every
//!   [`FLUSH_INTERVAL`], or at once by the request that fills it past [`FLUSH_BYTES`]
//!   (nginx's `access_log … buffer= flush=`);
//! - every other event (start-up, warnings, errors) goes through `tracing`'s formatter into
//!   the same buffer and is written at once, after the request lines before it: the order
//!   is kept, and nothing but request lines waits.
//!
//! [`flush`] at exit writes what is left. Whether request lines are written at all is the
//! log filter's decision (`log.level`, `RUST_LOG`), asked per line as `tracing` would.
use std::{
    cell::RefCell,
    io::{self, Write},
    sync::{Mutex, MutexGuard, Once},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tracing_subscriber::fmt::MakeWriter;

/// How long a request line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// A buffer this full is written by the request that filled it.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// Lines not written yet.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Held while writing to standard error, so that buffers taken in order are written in order.
static OUT: Mutex<()> = Mutex::new(());
static FLUSHER: Once = Once::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding either lock leaves bytes, still fine to write.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes every pending line to standard error.
pub fn flush() {
    let _out = lock(&OUT);
    let lines = std::mem::take(&mut *lock(&PENDING));
    if !lines.is_empty() {
        // Nowhere to report a failure to write the log.
        let _ = io::stderr().lock().write_all(&lines);
    }
}

fn append(line: &[u8], now: bool) {
    let full = {
        let mut pending = lock(&PENDING);
        pending.extend_from_slice(line);
        pending.len() >= FLUSH_BYTES
    };
    if now || full {
        flush();
    }
}

/// The writer `tracing_subscriber::fmt` formats every other event into: appended after the
/// pending request lines and written at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter(Vec::new())
    }
}

/// One event's bytes (the formatter writes an event in one call, then drops the writer).
#[derive(Debug)]
pub struct EventWriter(Vec<u8>);

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            append(&self.0, true);
        }
    }
}

thread_local! {
    /// This thread's line buffer and the `YYYY-MM-DDTHH:MM:SS.` of the second it last saw.
    static LINE: RefCell<(Vec<u8>, u64, [u8; 20])> = const { RefCell::new((Vec::new(), u64::MAX, [0; 20])) };
}

/// The request log line, if the log filter lets `portcullis::request` through at INFO:
/// `2026-12-01T19:04:17.123456Z  INFO portcullis::request: method=GET path=/healthz status=200 latency_us=12`.
/// `path` is the path alone (a query string may carry a secret).
pub fn request(method: &str, path: &str, status: u16, latency_us: u64) {
    if !tracing::enabled!(target: "portcullis::request", tracing::Level::INFO) {
        return;
    }
    FLUSHER.call_once(|| {
        let spawned = std::thread::Builder::new().name("log-flush".into()).spawn(|| {
            loop {
                std::thread::sleep(FLUSH_INTERVAL);
                flush();
            }
        });
        if spawned.is_err() {
            tracing::warn!("no log flushing thread: request lines are written when 64 KiB have gathered");
        }
    });
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    LINE.with_borrow_mut(|(line, second, stamp)| {
        format_line(line, second, stamp, since_epoch, method, path, status, latency_us);
        append(line, false);
    });
}

#[allow(clippy::too_many_arguments)]
fn format_line(
    line: &mut Vec<u8>,
    second: &mut u64,
    stamp: &mut [u8; 20],
    since_epoch: Duration,
    method: &str,
    path: &str,
    status: u16,
    latency_us: u64,
) {
    {
        if since_epoch.as_secs() != *second {
            *second = since_epoch.as_secs();
            let at = chrono::DateTime::<chrono::Utc>::from(UNIX_EPOCH + Duration::from_secs(*second));
            let text = at.format("%Y-%m-%dT%H:%M:%S.").to_string();
            // A date past year 9999 would not fit: keep the 20 bytes there are.
            let n = text.len().min(stamp.len());
            stamp[..n].copy_from_slice(&text.as_bytes()[..n]);
        }
        line.clear();
        line.extend_from_slice(stamp);
        let micros = since_epoch.subsec_micros();
        let mut digits = itoa::Buffer::new();
        let micros = digits.format(micros);
        line.extend(std::iter::repeat_n(b'0', 6 - micros.len()));
        line.extend_from_slice(micros.as_bytes());
        line.extend_from_slice(b"Z  INFO portcullis::request: method=");
        line.extend_from_slice(method.as_bytes());
        line.extend_from_slice(b" path=");
        line.extend_from_slice(path.as_bytes());
        line.extend_from_slice(b" status=");
        line.extend_from_slice(digits.format(status).as_bytes());
        line.extend_from_slice(b" latency_us=");
        line.extend_from_slice(digits.format(latency_us).as_bytes());
        line.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(since_epoch: Duration, status: u16) -> String {
        let (mut line, mut second, mut stamp) = (Vec::new(), u64::MAX, [0; 20]);
        format_line(&mut line, &mut second, &mut stamp, since_epoch, "GET", "/protected/", status, 73);
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn the_request_line_reads_as_tracing_would_write_it() {
        // 2026-12-01T19:04:17.000042Z, as tracing_subscriber's default format writes a
        // `tracing::info!(target: "portcullis::request", method = %m, path = %p, ...)`.
        let at = Duration::from_secs(1_796_151_857) + Duration::from_micros(42);
        assert_eq!(
            line(at, 200),
            "2026-12-01T19:04:17.000042Z  INFO portcullis::request: method=GET path=/protected/ status=200 latency_us=73\n"
        );
        // The date is made again when the second changes; microseconds keep six digits.
        let later = Duration::from_secs(1_796_151_918) + Duration::from_micros(999_999);
        assert!(line(later, 404).starts_with("2026-12-01T19:05:18.999999Z  INFO"), "{}", line(later, 404));
    }

    #[test]
    fn event_lines_are_written_after_the_request_lines_before_them() {
        append(b"request line\n", false);
        let mut event = Stderr.make_writer();
        event.write_all(b"a warning\n").unwrap();
        drop(event);
        assert!(lock(&PENDING).is_empty(), "an event writes out everything pending");
    }
}
