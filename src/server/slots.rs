//! `server.max_connections`: a semaphore of connection slots, and the open connections, so
//! that one can be closed to make room.
//!
//! A plain cap turns "out of file descriptors" into "out of slots": clients that trickle
//! their heads would hold every slot for `server.header_timeout`, and a health check would
//! queue behind them in the kernel's backlog. So a new connection that finds the slots full
//! closes the connection that has waited longest for a request (nginx does the same with idle
//! keep-alive connections when it runs out); one whose request is being processed is never
//! chosen, and when every connection is busy the new one waits.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, futures::Notified};

use super::conn::Conn;

pub struct Slots {
    permits: Arc<Semaphore>,
    max: u32,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    closed: Notify,
}

/// A connection's slot; dropping it (after the socket) frees the slot.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
        self.slots.closed.notify_waiters();
    }
}

impl Slots {
    pub fn new(max_connections: usize) -> Arc<Self> {
        let max = u32::try_from(max_connections.min(Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            closed: Notify::new(),
        })
    }

    /// A slot for `conn`: at once if one is free; else after closing the connection that has
    /// waited longest for a request. While every connection is busy, tries again every
    /// `retry`, as connections may turn idle without closing.
    pub async fn admit(self: &Arc<Self>, conn: &Arc<Conn>, retry: Duration) -> Slot {
        let permit = loop {
            if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
                break permit;
            }
            self.close_longest_waiting();
            if let Ok(Ok(permit)) = tokio::time::timeout(retry, Arc::clone(&self.permits).acquire_owned()).await {
                break permit;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Arc::clone(conn));
        Slot { slots: Arc::clone(self), id, _permit: permit }
    }

    /// Closes the open connection that has waited longest for a request, if one is not busy.
    pub fn close_longest_waiting(&self) -> bool {
        let oldest = {
            let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.values().filter_map(|c| Some((c.waiting_since()?, Arc::clone(c)))).min_by_key(|(since, _)| *since)
        };
        oldest.map(|(_, conn)| conn.close()).is_some()
    }

    /// Resolves at the next connection's close; it counts from its creation, polled or not,
    /// so create it before causing one.
    pub fn next_close(&self) -> Notified<'_> {
        self.closed.notified()
    }

    /// Resolves once every connection has closed.
    pub async fn all_closed(&self) {
        let _ = self.permits.acquire_many(self.max).await;
    }

    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::conn::Timeouts;

    fn conn() -> Arc<Conn> {
        let t = Duration::from_secs(60);
        Conn::new(Timeouts { header: t, keep_alive: t, body: t })
    }

    #[tokio::test]
    async fn a_full_house_closes_the_connection_waiting_longest_and_frees_its_slot_on_drop() {
        let slots = Slots::new(2);
        let (first, second, third) = (conn(), conn(), conn());
        let a = slots.admit(&first, Duration::from_millis(10)).await;
        let _b = slots.admit(&second, Duration::from_millis(10)).await;
        assert_eq!(slots.open(), 2);
        let waiting = tokio::spawn({
            let (slots, third) = (Arc::clone(&slots), Arc::clone(&third));
            async move { slots.admit(&third, Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "no slot until a connection closes");
        assert_eq!(first.waiting_since(), None, "the oldest was told to close");
        assert!(second.waiting_since().is_some(), "the other one was left alone");
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
        assert_eq!(slots.open(), 2);
    }
}
