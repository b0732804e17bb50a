//! How often one per-user handler (one user, one endpoint) may be started:
//! exponential backoff after failed starts, and a budget of starts per
//! window. Without them a handler that exits before accepting is restarted by
//! root as fast as it can exit, for as long as a call waits (audit M5).

use std::time::{Duration, Instant};

/// The wait after the second failed start in a row (the first is restarted
/// at once); it doubles with each further one.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between failed starts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// At most this many starts per [`START_WINDOW`], failed or not.
pub const START_BUDGET: u32 = 10;
/// The window of [`START_BUDGET`].
pub const START_WINDOW: Duration = Duration::from_secs(60);

/// What to do with a connection that waits and no handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Start the handler (counted in the budget).
    Start,
    /// Refuse what waits: the last start failed and the backoff lasts until then.
    Backoff(Instant),
    /// Refuse what waits: the window's budget is spent until then. `log` is
    /// true the first time in the window, so the event is logged once.
    OverBudget {
        /// When the window ends.
        until: Instant,
        /// First refusal of this window.
        log: bool,
    },
}

/// The start history of one (user, endpoint).
#[derive(Debug)]
pub struct StartLimit {
    window_start: Instant,
    starts: u32,
    logged: bool,
    failures: u32,
    not_before: Option<Instant>,
}

impl StartLimit {
    /// No start yet.
    pub fn new(now: Instant) -> StartLimit {
        StartLimit {
            window_start: now,
            starts: 0,
            logged: false,
            failures: 0,
            not_before: None,
        }
    }

    /// Decides on a waiting connection; a `Start` is counted.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if now.duration_since(self.window_start) >= START_WINDOW {
            self.window_start = now;
            self.starts = 0;
            self.logged = false;
        }
        if let Some(until) = self.not_before.filter(|t| now < *t) {
            return Verdict::Backoff(until);
        }
        if self.starts >= START_BUDGET {
            let log = !self.logged;
            self.logged = true;
            return Verdict::OverBudget {
                until: self.window_start + START_WINDOW,
                log,
            };
        }
        self.starts += 1;
        Verdict::Start
    }

    /// A start failed (it could not run, or it crashed: exited with a
    /// failure status or by a signal) after running `ran`: no start before
    /// the returned wait is over. A first crash is restarted at once (the
    /// call that follows should not fail for it); each further one in a row
    /// waits [`BACKOFF_FIRST`], doubling up to [`BACKOFF_MAX`]. A handler that
    /// ran at least [`BACKOFF_MAX`] before crashing starts the count over.
    pub fn failed(&mut self, now: Instant, ran: Duration) -> Duration {
        if ran >= BACKOFF_MAX {
            self.failures = 0;
        }
        let wait = match self.failures {
            0 => Duration::ZERO,
            n => BACKOFF_FIRST
                .saturating_mul(1 << (n - 1).min(16))
                .min(BACKOFF_MAX),
        };
        self.failures = self.failures.saturating_add(1);
        self.not_before = Some(now + wait);
        wait
    }

    /// A start ended well (the handler exited with status 0, e.g. idle): the
    /// backoff starts over. A handler that exits 0 at once, before accepting,
    /// is restarted for the calls still waiting, and so is bounded by the
    /// budget alone.
    pub fn served(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_starts_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut l = StartLimit::new(t0);
        assert_eq!(l.check(t0), Verdict::Start);
        let quick = Duration::from_millis(5);
        let waits: Vec<u64> = (0..9).map(|_| l.failed(t0, quick).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(l.check(t0), Verdict::Backoff(t0 + BACKOFF_MAX));
        assert_eq!(l.check(t0 + BACKOFF_MAX), Verdict::Start);
        // A clean exit, or a crash after a long run, starts the count over.
        l.served();
        assert_eq!(l.failed(t0, quick), Duration::ZERO);
        assert_eq!(l.failed(t0, quick).as_secs(), 1);
        assert_eq!(l.failed(t0, BACKOFF_MAX), Duration::ZERO);
    }

    #[test]
    fn the_budget_refuses_and_logs_once_per_window() {
        let t0 = Instant::now();
        let mut l = StartLimit::new(t0);
        for _ in 0..START_BUDGET {
            assert_eq!(l.check(t0), Verdict::Start);
        }
        let until = t0 + START_WINDOW;
        assert_eq!(l.check(t0), Verdict::OverBudget { until, log: true });
        assert_eq!(l.check(t0), Verdict::OverBudget { until, log: false });
        // A new window: starts again, and a new refusal is logged again.
        let t1 = t0 + START_WINDOW;
        for _ in 0..START_BUDGET {
            assert_eq!(l.check(t1), Verdict::Start);
        }
        assert!(matches!(l.check(t1), Verdict::OverBudget { log: true, .. }));
    }
}
