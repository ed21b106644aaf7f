//! Mail work off the request path: a bounded queue of jobs and one task running them in
//! order (as the audit trail's writer). A request only queues its job, so its answer never
//! waits on a mail server, and it does the same work whatever the job will find (an unknown
//! address queues the same job as a known one). A full queue drops the job, logs it and
//! counts it — it never blocks the request.
use std::{future::Future, panic::AssertUnwindSafe, pin::Pin, sync::Arc};

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{MailLabels, Metrics};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Command {
    Run(Job),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// Starts the worker on the current runtime.
    pub fn spawn(capacity: usize, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        tokio::spawn(worker(rx));
        Self { tx, metrics }
    }

    /// Queues `job` (a mail of kind `kind`); a full queue drops it.
    pub fn submit(&self, kind: &'static str, job: impl Future<Output = ()> + Send + 'static) {
        if self.tx.try_send(Command::Run(Box::pin(job))).is_err() {
            self.metrics.emails.get_or_create(&MailLabels { kind, outcome: "dropped" }).inc();
            tracing::warn!(kind, "the mail queue is full (email.queue_capacity): a mail was dropped");
        }
    }

    /// Waits until every job queued before this call has run (tests, the CLI before exit).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn worker(mut rx: mpsc::Receiver<Command>) {
    while let Some(command) = rx.recv().await {
        match command {
            // A job that panicked must not take the sender down with it.
            Command::Run(job) => {
                if AssertUnwindSafe(job).catch_unwind().await.is_err() {
                    tracing::error!("a mail job panicked");
                }
            }
            Command::Flush(ack) => {
                let _ = ack.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_and_a_full_queue_drops() {
        let metrics = Arc::new(Metrics::new(true));
        let outbox = Outbox::spawn(2, Arc::clone(&metrics));
        let (release, hold) = oneshot::channel::<()>();
        let done = Arc::new(AtomicUsize::new(0));
        outbox.submit("test", async move {
            let _ = hold.await;
        });
        tokio::task::yield_now().await;
        for _ in 0..4 {
            let done = Arc::clone(&done);
            outbox.submit("test", async move {
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let _ = release.send(());
        outbox.flush().await;
        assert_eq!(done.load(Ordering::SeqCst), 2, "two fit in the queue behind the held job");
        let dropped = metrics.emails.get_or_create(&MailLabels { kind: "test", outcome: "dropped" }).get();
        assert_eq!(dropped, 2);
        outbox.submit("test", async { panic!("a bug") });
        let after = Arc::clone(&done);
        outbox.submit("test", async move {
            after.fetch_add(1, Ordering::SeqCst);
        });
        outbox.flush().await;
        assert_eq!(done.load(Ordering::SeqCst), 3, "the worker survived the panic");
    }
}
