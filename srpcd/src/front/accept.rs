//! The accept loop's behaviour at a limit: back off while the front is out of
//! file descriptors, and say so at most once a second (issue 12, item 9).
//!
//! At `EMFILE`/`ENFILE` the pending connection stays in the backlog, so the
//! listener is readable again at once: retrying at once spun a core and wrote
//! ~50 MB/s of identical log lines.

use std::time::{Duration, Instant};

/// The first pause after an accept failed for want of descriptors.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause: connections closing free descriptors within a second.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How long to wait before the next accept.
#[derive(Debug, Default)]
pub struct Backoff {
    pause: Option<Duration>,
}

impl Backoff {
    /// The pause before the next accept (zero unless out of descriptors).
    pub fn pause(&self) -> Duration {
        self.pause.unwrap_or(Duration::ZERO)
    }

    /// An accept succeeded: accept at once again.
    pub fn accepted(&mut self) {
        self.pause = None;
    }

    /// An accept failed with `e`: out of descriptors (this process's or the
    /// system's) waits 100 ms, doubling to 1 s; other errors (a connection
    /// reset before it was accepted) do not wait.
    pub fn failed(&mut self, e: &std::io::Error) {
        use rustix::io::Errno;
        let out_of_fds = matches!(
            Errno::from_io_error(e),
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        );
        self.pause = out_of_fds.then(|| self.pause.map_or(FIRST_PAUSE, |p| (p * 2).min(MAX_PAUSE)));
    }
}

/// A log line that may repeat fast: written at most once a second, with the
/// number of times it was left out since the last one.
#[derive(Debug)]
pub struct Repeated {
    last: Option<Instant>,
    suppressed: u64,
}

/// How often a repeated line is written at most.
const EVERY: Duration = Duration::from_secs(1);

impl Repeated {
    /// A line not yet written.
    pub const fn new() -> Repeated {
        Repeated {
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to write the line now; if so, how many were left out before it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl Default for Repeated {
    fn default() -> Repeated {
        Repeated::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_fds_backs_off_doubling_to_a_second() {
        let mut b = Backoff::default();
        let emfile = std::io::Error::from(rustix::io::Errno::MFILE);
        let mut pauses = Vec::new();
        for _ in 0..6 {
            b.failed(&emfile);
            pauses.push(b.pause().as_millis());
        }
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        b.accepted();
        assert_eq!(b.pause(), Duration::ZERO);
        b.failed(&std::io::Error::from(std::io::ErrorKind::ConnectionAborted));
        assert_eq!(b.pause(), Duration::ZERO);
    }

    #[test]
    fn a_repeated_line_is_written_once_a_second_with_a_count() {
        let mut r = Repeated::new();
        let t0 = Instant::now();
        assert_eq!(r.admit(t0), Some(0));
        for i in 1..=50 {
            assert_eq!(r.admit(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(r.admit(t0 + Duration::from_secs(1)), Some(50));
        assert_eq!(r.admit(t0 + Duration::from_millis(1001)), None);
    }
}
