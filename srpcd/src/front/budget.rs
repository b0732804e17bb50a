//! Byte budgets for the request and reply data the front holds: one per
//! connection and one for the whole front. A request is charged from the time
//! its frame is read until its reply has been written to the client (the
//! charge becomes the reply's size once the reply is there); a connection
//! reads its next request only while both budgets have room. A client that
//! does not read its replies therefore stops being read (backpressure, not an
//! error), and the front's memory stays bounded by the budgets.
//!
//! Room is checked before a frame is read, not against its size, so a single
//! request larger than the per-connection budget (but within `max_message`)
//! still goes through when the connection is otherwise idle: a budget is
//! overshot by at most one frame per connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The front-wide count, shared by every connection.
#[derive(Debug, Default)]
pub struct Global {
    used: AtomicUsize,
    /// Woken on every release, anywhere.
    freed: Notify,
}

impl Global {
    /// Bytes held now, over all connections.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// One connection's budget.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
    global: Arc<Global>,
    global_limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes for one connection, within `global_limit`
    /// bytes for the front.
    pub fn new(limit: usize, global: Arc<Global>, global_limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
            global,
            global_limit,
        })
    }

    /// Bytes this connection holds now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn has_room(&self) -> bool {
        self.used() < self.limit && self.global.used() < self.global_limit
    }

    /// Waits until both budgets have room for another request.
    pub async fn room(&self) {
        loop {
            let freed = self.global.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }

    /// Charges `bytes` now (never waits: the bytes are already held).
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        self.add(bytes);
        Charge {
            budget: Arc::clone(self),
            bytes,
        }
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        self.global.used.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.global.used.fetch_sub(bytes, Ordering::AcqRel);
        self.global.freed.notify_waiters();
    }
}

/// Bytes charged to a budget until dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Charge {
    /// Charges `bytes` instead of what was charged (a request's charge
    /// becomes its reply's).
    pub fn resize(&mut self, bytes: usize) {
        self.budget.add(bytes);
        self.budget.release(self.bytes);
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_connection_waits_until_its_bytes_are_released() {
        let global = Arc::new(Global::default());
        let budget = Budget::new(100, Arc::clone(&global), 1000);
        budget.room().await;
        let mut charge = budget.charge(150);
        assert_eq!((budget.used(), global.used()), (150, 150));
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.room()).await;
        assert!(waiting.is_err(), "room while over budget");
        charge.resize(40);
        assert_eq!((budget.used(), global.used()), (40, 40));
        budget.room().await;
        let second = budget.charge(70);
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        drop(charge);
        assert_eq!((budget.used(), global.used()), (0, 0));
    }

    #[tokio::test]
    async fn the_global_budget_pauses_every_connection() {
        let global = Arc::new(Global::default());
        let a = Budget::new(100, Arc::clone(&global), 150);
        let b = Budget::new(100, Arc::clone(&global), 150);
        let held = a.charge(90);
        let more = b.charge(90);
        // b is under its own budget, but the front is over its own.
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.room()).await;
        assert!(waiting.is_err());
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), b.room())
            .await
            .unwrap();
        drop(more);
        assert_eq!(global.used(), 0);
    }
}
