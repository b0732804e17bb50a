//! Allocation of sequence numbers and fids: the lowest free number first, and
//! never a number that is still in use.

use std::collections::BTreeSet;

/// A pool of numbers `first..=last` of which at most `cap` are out at once.
#[derive(Debug)]
pub(crate) struct IdPool {
    next: u64,
    last: u64,
    free: BTreeSet<u64>,
    in_use: u64,
    cap: u64,
}

impl IdPool {
    pub(crate) fn new(first: u64, last: u64, cap: u64) -> IdPool {
        IdPool {
            next: first,
            last,
            free: BTreeSet::new(),
            in_use: 0,
            cap,
        }
    }

    /// The lowest free number, or `None` when `cap` numbers are out or the
    /// range is used up.
    pub(crate) fn alloc(&mut self) -> Option<u64> {
        if self.in_use >= self.cap {
            return None;
        }
        // Reusing the lowest released number keeps numbers small, and makes reuse
        // after release observable (tests rely on it).
        let id = match self.free.pop_first() {
            Some(id) => id,
            None if self.next <= self.last => {
                let id = self.next;
                self.next += 1;
                id
            }
            None => return None,
        };
        self.in_use += 1;
        Some(id)
    }

    /// Returns `id` to the pool. Releasing a number that is not out is ignored,
    /// so a double release can never hand one number to two owners.
    pub(crate) fn release(&mut self, id: u64) {
        if id < self.next && self.free.insert(id) {
            self.in_use -= 1;
        }
    }

    /// Numbers out now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> u64 {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_first_and_capped() {
        let mut p = IdPool::new(1, 10, 3);
        assert_eq!(p.alloc(), Some(1));
        assert_eq!(p.alloc(), Some(2));
        assert_eq!(p.alloc(), Some(3));
        assert_eq!(p.alloc(), None, "cap reached");
        p.release(2);
        p.release(2);
        assert_eq!(p.in_use(), 2, "double release is ignored");
        assert_eq!(p.alloc(), Some(2));
        p.release(99);
        assert_eq!(
            p.in_use(),
            3,
            "releasing a number never handed out is ignored"
        );
    }

    #[test]
    fn range_exhaustion() {
        let mut p = IdPool::new(5, 6, 100);
        assert_eq!(p.alloc(), Some(5));
        assert_eq!(p.alloc(), Some(6));
        assert_eq!(p.alloc(), None);
        p.release(5);
        assert_eq!(p.alloc(), Some(5));
    }
}
