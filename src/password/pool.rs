//! The bounded pool password work runs on: `hash_workers` permits, each lent together with
//! its own argon2 working area, so that memory for argon2 is at most one area per permit.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{HashError, argon2id::Scratch};

type Areas = Arc<Mutex<Vec<Scratch>>>;

pub(super) struct Pool {
    permits: Arc<Semaphore>,
    areas: Areas,
    capacity: usize,
}

/// A permit to hash and the working area that goes with it. Owned, so that it can move into
/// the blocking task: a request dropped mid-hash (the client went away) does not free the
/// permit while the hash still runs, and no more than `hash_workers` hashes run at once.
pub(super) struct Lease {
    scratch: Scratch,
    areas: Areas,
    // Declared last: dropped after `drop` has put the area back.
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    /// `workers` permits and areas of `capacity` blocks; `first` is one of them, already in use
    /// (the dummy hash was made in it), the others are allocated at their first use. Areas are
    /// lent last in, first out: one at a time, logins keep using the area already allocated.
    pub fn new(workers: usize, capacity: usize, first: Scratch) -> Self {
        let mut areas: Vec<Scratch> = (1..workers).map(|_| Scratch::new(capacity)).collect();
        areas.push(first);
        Self { permits: Arc::new(Semaphore::new(workers)), areas: Arc::new(Mutex::new(areas)), capacity }
    }

    pub async fn lease(&self) -> Result<Lease, HashError> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| HashError::PoolClosed)?;
        // There are as many areas as permits and each area is back before its permit, so one
        // is free; the fallback only avoids a panic path.
        let scratch = lock(&self.areas).pop().unwrap_or_else(|| Scratch::new(self.capacity));
        Ok(Lease { scratch, areas: Arc::clone(&self.areas), _permit: permit })
    }

    #[cfg(test)]
    pub fn free_areas(&self) -> usize {
        lock(&self.areas).len()
    }
}

impl Lease {
    pub fn scratch(&mut self) -> &mut Scratch {
        &mut self.scratch
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let scratch = std::mem::replace(&mut self.scratch, Scratch::new(0));
        lock(&self.areas).push(scratch);
    }
}

/// Nothing panics while holding the lock, and a list of areas stays valid if something did.
fn lock(areas: &Mutex<Vec<Scratch>>) -> std::sync::MutexGuard<'_, Vec<Scratch>> {
    areas.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_area_goes_with_each_permit_and_comes_back_with_it() {
        let pool = Pool::new(2, 8, Scratch::new(8));
        assert_eq!(pool.free_areas(), 2);
        let first = pool.lease().await.unwrap();
        let second = pool.lease().await.unwrap();
        assert_eq!(pool.free_areas(), 0);
        assert!(tokio::time::timeout(Duration::from_millis(50), pool.lease()).await.is_err(), "a third waits");
        drop(first);
        assert_eq!(pool.free_areas(), 1);
        let third = pool.lease().await.unwrap();
        drop((second, third));
        assert_eq!(pool.free_areas(), 2);
    }
}
