//! Limits failed authentications per user and per source address.
//!
//! Each user and each source may fail `auth_attempts` times within a sliding
//! `lockout_window`; the next attempt is refused before PAM runs. A lock lifts
//! when the oldest of those failures leaves the window, so it lasts at most one
//! window after the failure that reached the limit. Refused attempts are not
//! failures: hammering a locked account does not extend its lock.
//!
//! * A success clears the user's failures, not the source's: otherwise one
//!   account the attacker owns would reset the counter of a source that is
//!   guessing other accounts.
//! * Sources are counted per IPv4 address and per IPv6 /64 (one host usually
//!   owns a whole /64); IPv4-mapped IPv6 addresses count as IPv4.
//! * User names are counted case-insensitively (some name services are) and by
//!   their first 256 bytes, so a long name costs no more memory than a short one.
//! * Memory is bounded: each table holds at most `capacity` users or sources
//!   (entries whose failures all left the window are pruned first). **When a
//!   table is full, users or sources it does not already track are refused**
//!   (fail closed) until entries expire: a flood of distinct sources can then
//!   lock out newcomers for up to one window, but it can neither grow memory nor
//!   wipe the counters of accounts under attack.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config;
use crate::source::source_key;

/// Users or sources each table tracks at most.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Longest window: keeps `Instant + window` far from overflow.
const MAX_WINDOW: Duration = Duration::from_secs(365 * 86_400);

/// Longest user-name prefix that is kept as a key.
const MAX_USER_KEY: usize = 256;

/// Where the current time comes from (a fake one in tests).
pub trait Clock {
    /// The current time.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// An attempt that is refused without running PAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed authentication attempts ({cause}); retry in {}s", retry_after.as_secs().max(1))]
pub struct Locked {
    /// When the attempt would next be allowed (if nothing else fails).
    pub retry_after: Duration,
    /// Which limit refused it: for the log, never for the client, who learns
    /// only "too many attempts".
    pub cause: LockCause,
}

impl Locked {
    /// The protocol error code the client gets.
    pub fn code(&self) -> srpc_proto::ErrorCode {
        srpc_proto::ErrorCode::TooManyAttempts
    }

    /// The message the client gets: the same whichever limit refused.
    pub fn message(&self) -> &'static str {
        "too many failed attempts"
    }
}

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockCause {
    /// The user failed too often.
    User,
    /// The source address failed too often.
    Source,
    /// A table is full and does not track this user or source yet.
    Full,
}

impl std::fmt::Display for LockCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockCause::User => "user",
            LockCause::Source => "source address",
            LockCause::Full => "attempt table full",
        })
    }
}

/// Failure counts per user and per source. Not synchronised: the monitor keeps
/// one behind a mutex.
///
/// ```
/// use std::net::IpAddr;
/// use srpcd::lockout::Lockout;
///
/// let mut lockout = Lockout::new(&srpcd::config::Limits::default());
/// let source: IpAddr = "192.0.2.7".parse().unwrap();
/// if lockout.check("alice", source).is_ok() {
///     // … run PAM; on failure:
///     lockout.record_failure("alice", source);
/// }
/// ```
#[derive(Debug)]
pub struct Lockout<C: Clock = SystemClock> {
    attempts: usize,
    window: Duration,
    users: Table<String>,
    sources: Table<IpAddr>,
    clock: C,
}

impl Lockout<SystemClock> {
    /// A limiter with the configured attempts and window, tracking up to
    /// [`DEFAULT_CAPACITY`] users and sources.
    pub fn new(limits: &config::Limits) -> Lockout<SystemClock> {
        Lockout::with_clock(
            limits.auth_attempts,
            limits.lockout_window,
            DEFAULT_CAPACITY,
            SystemClock,
        )
    }
}

impl<C: Clock> Lockout<C> {
    /// A limiter allowing `attempts` failures per `window` (at least one
    /// failure and one millisecond, at most a year), tracking at most `capacity`
    /// users and `capacity` sources.
    pub fn with_clock(attempts: u32, window: Duration, capacity: usize, clock: C) -> Lockout<C> {
        Lockout {
            attempts: usize::try_from(attempts).unwrap_or(usize::MAX).max(1),
            window: window.clamp(Duration::from_millis(1), MAX_WINDOW),
            users: Table::new(capacity.max(1)),
            sources: Table::new(capacity.max(1)),
            clock,
        }
    }

    /// Whether `user` may try to authenticate from `source` now.
    pub fn check(&mut self, user: &str, source: IpAddr) -> Result<(), Locked> {
        let now = self.clock.now();
        let (attempts, window) = (self.attempts, self.window);
        self.sources
            .check(&source_key(source), now, window, attempts)
            .map_err(|l| l.with_cause(LockCause::Source))?;
        self.users
            .check(&user_key(user), now, window, attempts)
            .map_err(|l| l.with_cause(LockCause::User))
    }

    /// Counts a failed authentication of `user` from `source`.
    pub fn record_failure(&mut self, user: &str, source: IpAddr) {
        let now = self.clock.now();
        let (attempts, window) = (self.attempts, self.window);
        self.sources
            .record(source_key(source), now, window, attempts);
        self.users.record(user_key(user), now, window, attempts);
    }

    /// New limits (a reload), keeping the failures counted so far.
    pub fn reconfigure(&mut self, limits: &config::Limits) {
        self.attempts = usize::try_from(limits.auth_attempts)
            .unwrap_or(usize::MAX)
            .max(1);
        self.window = limits
            .lockout_window
            .clamp(Duration::from_millis(1), MAX_WINDOW);
    }

    /// Starts an attempt: refused like [`check`](Self::check), else counted
    /// *now* as a failure of the user and of the source, so attempts running
    /// in parallel count against each other (audit H4). [`succeeded`]
    /// (Self::succeeded) refunds it; an attempt that fails, is abandoned or
    /// times out stays counted.
    pub fn begin(&mut self, user: &str, source: IpAddr) -> Result<Attempt, Locked> {
        self.check(user, source)?;
        let at = self.clock.now();
        let (attempts, window) = (self.attempts, self.window);
        let (user, source) = (user_key(user), source_key(source));
        self.sources.record(source, at, window, attempts);
        self.users.record(user.clone(), at, window, attempts);
        Ok(Attempt { user, source, at })
    }

    /// The attempt proved the user's credentials: the user's failures are
    /// forgotten and the source gets this attempt back (not earlier failures).
    pub fn succeeded(&mut self, attempt: &Attempt) {
        self.users.map.remove(&attempt.user);
        self.sources.refund(&attempt.source, attempt.at);
    }

    /// The attempt ended without checking a password (a protocol error, an
    /// expired password or account): it is given back to both.
    pub fn refund(&mut self, attempt: &Attempt) {
        self.users.refund(&attempt.user, attempt.at);
        self.sources.refund(&attempt.source, attempt.at);
    }

    pub fn record_success(&mut self, user: &str) {
        self.users.map.remove(&user_key(user));
    }
}

/// One attempt counted by [`Lockout::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    user: String,
    source: IpAddr,
    at: Instant,
}

fn user_key(user: &str) -> String {
    let mut end = user.len().min(MAX_USER_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_lowercase()
}

/// A refusal before the caller names its cause.
struct Refused {
    retry_after: Duration,
    full: bool,
}

impl Refused {
    fn with_cause(self, cause: LockCause) -> Locked {
        Locked {
            retry_after: self.retry_after,
            cause: if self.full { LockCause::Full } else { cause },
        }
    }
}

/// Recent failure times per key, newest last, at most `attempts` per key.
#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, VecDeque<Instant>>,
    capacity: usize,
    /// No entry expires entirely before this (it may be early, never late), so
    /// a full table is swept only when a sweep can free something.
    next_expiry: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(capacity: usize) -> Table<K> {
        Table {
            map: HashMap::new(),
            capacity,
            next_expiry: None,
        }
    }

    fn check(
        &mut self,
        key: &K,
        now: Instant,
        window: Duration,
        attempts: usize,
    ) -> Result<(), Refused> {
        if let Some(times) = self.map.get_mut(key) {
            forget_expired(times, now, window);
            if times.is_empty() {
                self.map.remove(key);
                return Ok(());
            }
            if times.len() >= attempts {
                let oldest = times[times.len() - attempts];
                return Err(Refused {
                    retry_after: (oldest + window).saturating_duration_since(now),
                    full: false,
                });
            }
            return Ok(());
        }
        if self.is_full(now, window) {
            return Err(Refused {
                retry_after: self
                    .next_expiry
                    .map_or(window, |t| t.saturating_duration_since(now)),
                full: true,
            });
        }
        Ok(())
    }

    fn record(&mut self, key: K, now: Instant, window: Duration, attempts: usize) {
        if !self.map.contains_key(&key) && self.is_full(now, window) {
            // Only an attempt admitted just before the table filled gets here;
            // `check` refuses untracked keys from now on.
            return;
        }
        let times = self.map.entry(key).or_default();
        forget_expired(times, now, window);
        times.push_back(now);
        while times.len() > attempts {
            times.pop_front();
        }
        let expiry = now + window;
        self.next_expiry = Some(self.next_expiry.map_or(expiry, |t| t.min(expiry)));
    }

    /// Takes back the attempt counted at `at`, if it is still counted.
    fn refund(&mut self, key: &K, at: Instant) {
        if let Some(times) = self.map.get_mut(key) {
            if let Some(i) = times.iter().position(|&t| t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                self.map.remove(key);
            }
        }
    }

    /// True when the table is full even after dropping entries that expired.
    fn is_full(&mut self, now: Instant, window: Duration) -> bool {
        if self.map.len() < self.capacity {
            return false;
        }
        if self.next_expiry.is_some_and(|t| t <= now) {
            let mut next = None::<Instant>;
            self.map.retain(|_, times| {
                forget_expired(times, now, window);
                let Some(&newest) = times.back() else {
                    return false;
                };
                let expiry = newest + window;
                next = Some(next.map_or(expiry, |t| t.min(expiry)));
                true
            });
            self.next_expiry = next;
        }
        self.map.len() >= self.capacity
    }
}

/// Drops failures that are `window` old or older.
fn forget_expired(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times.front().is_some_and(|&t| t + window <= now) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Clone)]
    struct FakeClock(Rc<Cell<Instant>>);

    impl FakeClock {
        fn advance(&self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.0.get()
        }
    }

    const WINDOW: Duration = Duration::from_secs(300);

    fn lockout(attempts: u32, capacity: usize) -> (Lockout<FakeClock>, FakeClock) {
        let clock = FakeClock(Rc::new(Cell::new(Instant::now())));
        (
            Lockout::with_clock(attempts, WINDOW, capacity, clock.clone()),
            clock,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn user_is_locked_after_n_failures_until_the_window_passes() {
        let (mut l, clock) = lockout(3, 100);
        for i in 0..3 {
            // Different sources, so only the user's counter can lock.
            let src = ip(&format!("192.0.2.{i}"));
            assert_eq!(l.check("alice", src), Ok(()));
            l.record_failure("alice", src);
            clock.advance(Duration::from_secs(10));
        }
        let locked = l.check("alice", ip("198.51.100.1")).unwrap_err();
        assert_eq!(locked.cause, LockCause::User);
        // The first failure was 30 s ago: it leaves the window in 270 s.
        assert_eq!(locked.retry_after, Duration::from_secs(270));
        assert_eq!(l.check("bob", ip("198.51.100.1")), Ok(()));

        clock.advance(Duration::from_secs(269));
        assert!(l.check("alice", ip("198.51.100.1")).is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.check("alice", ip("198.51.100.1")), Ok(()));
    }

    #[test]
    fn source_is_locked_across_user_names() {
        let (mut l, clock) = lockout(2, 100);
        let src = ip("203.0.113.9");
        l.record_failure("a", src);
        l.record_failure("b", src);
        let locked = l.check("c", src).unwrap_err();
        assert_eq!(locked.cause, LockCause::Source);
        assert_eq!(locked.retry_after, WINDOW);
        clock.advance(WINDOW);
        assert_eq!(l.check("c", src), Ok(()));
    }

    #[test]
    fn success_clears_the_user_but_not_the_source() {
        let (mut l, _clock) = lockout(2, 100);
        let src = ip("203.0.113.9");
        l.record_failure("alice", src);
        l.record_failure("alice", src);
        assert!(l.check("alice", ip("192.0.2.1")).is_err());
        l.record_success("alice");
        assert_eq!(l.check("alice", ip("192.0.2.1")), Ok(()));
        assert_eq!(l.check("alice", src).unwrap_err().cause, LockCause::Source);
    }

    #[test]
    fn attempts_count_when_they_begin_and_success_refunds_its_own() {
        let (mut l, clock) = lockout(3, 100);
        let src = ip("203.0.113.9");
        // Three started at once use up the budget before any has failed.
        let a = l.begin("alice", src).unwrap();
        let _b = l.begin("alice", src).unwrap();
        clock.advance(Duration::from_millis(1));
        let c = l.begin("bob", src).unwrap();
        assert_eq!(l.begin("carol", src).unwrap_err().cause, LockCause::Source);
        // One proves alice's password: alice is clear and the source gets
        // that one attempt back, not the others.
        l.succeeded(&a);
        assert!(l.begin("dave", src).is_ok());
        assert!(l.begin("erin", src).is_err());
        // An attempt that never checked a password is given back.
        l.refund(&c);
        assert!(l.begin("bob", src).is_ok());
    }

    #[test]
    fn names_and_addresses_are_normalised() {
        let (mut l, _clock) = lockout(2, 100);
        l.record_failure("Alice", ip("2001:db8::1"));
        l.record_failure("ALICE", ip("2001:db8::ffff:2"));
        // Same user whatever the case; same /64.
        assert_eq!(
            l.check("alice", ip("192.0.2.1")).unwrap_err().cause,
            LockCause::User
        );
        assert_eq!(
            l.check("bob", ip("2001:db8::3")).unwrap_err().cause,
            LockCause::Source
        );
        assert_eq!(l.check("bob", ip("2001:db8:0:1::3")), Ok(()));

        l.record_failure("x", ip("192.0.2.200"));
        l.record_failure("y", ip("::ffff:192.0.2.200"));
        assert!(l.check("z", ip("192.0.2.200")).is_err());

        let long = "é".repeat(400);
        l.record_failure(&long, ip("192.0.2.1"));
        assert_eq!(l.users.map.keys().map(String::len).max(), Some(256));
    }

    #[test]
    fn a_full_table_refuses_newcomers_until_entries_expire() {
        let (mut l, clock) = lockout(5, 3);
        for i in 0..3 {
            l.record_failure(&format!("u{i}"), ip(&format!("192.0.2.{i}")));
            clock.advance(Duration::from_secs(1));
        }
        // Tracked sources and users are still judged on their own counts.
        assert_eq!(l.check("u0", ip("192.0.2.0")), Ok(()));
        let locked = l.check("newcomer", ip("198.51.100.1")).unwrap_err();
        assert_eq!(locked.cause, LockCause::Full);
        assert_eq!(locked.retry_after, Duration::from_secs(297));
        // A failure that cannot be tracked does not grow the table.
        l.record_failure("newcomer", ip("198.51.100.1"));
        assert_eq!((l.users.map.len(), l.sources.map.len()), (3, 3));

        clock.advance(Duration::from_secs(297));
        assert_eq!(l.check("newcomer", ip("198.51.100.1")), Ok(()));
        l.record_failure("newcomer", ip("198.51.100.1"));
        assert_eq!((l.users.map.len(), l.sources.map.len()), (3, 3));
    }

    #[test]
    fn a_user_full_table_is_reported_as_full() {
        let (mut l, _clock) = lockout(5, 1);
        l.record_failure("u0", ip("192.0.2.1"));
        // The source is tracked, the user table is full.
        assert_eq!(
            l.check("u1", ip("192.0.2.1")).unwrap_err().cause,
            LockCause::Full
        );
    }
}
