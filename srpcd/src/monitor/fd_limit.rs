//! The file descriptors the configured limits need (issue 12, item 9).
//!
//! srpcd inherits its soft `RLIMIT_NOFILE` (often 1024, systemd's default
//! too), which is below what the front needs at the default
//! `limits.connections = 1024`. At start the monitor raises its own soft limit
//! to what the front needs (never above the hard limit, which only root's
//! caller may raise), gives the front that limit through the launcher, and
//! refuses to start when the hard limit is too low. Workers and handlers start
//! from the monitor's raised value unless limits.conf says otherwise.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use super::StartError;

/// Descriptors the front holds besides its connections: stdio, the monitor
/// channel, the TLS listener, the runtime's epoll, event and signal fds, and
/// room for what a library opens for a moment.
pub const FRONT_MARGIN: u64 = 64;

/// What the front needs open at once with `connections` clients: each
/// connection's TCP socket, and at most one worker link per connection (a link
/// serves a user with at least one attached session), plus the margin.
pub fn front_needs(connections: u32) -> u64 {
    2 * u64::from(connections) + FRONT_MARGIN
}

/// The most connections a front with `fds` descriptors serves.
fn connections_within(fds: u64) -> u64 {
    fds.saturating_sub(FRONT_MARGIN) / 2
}

/// The limit the front gets for `connections`, given the monitor's own limit:
/// the soft limit raised to the need (kept when already higher), the hard one
/// unchanged. An error names the numbers and what to change.
fn plan(connections: u32, own: &Rlimit) -> Result<Rlimit, StartError> {
    let need = front_needs(connections);
    if let Some(hard) = own.maximum {
        if hard < need {
            return Err(StartError::Check(format!(
                "limits.connections = {connections} needs {need} file descriptors in the front \
                 (2 x connections + {FRONT_MARGIN}), but the hard RLIMIT_NOFILE is {hard}: \
                 lower limits.connections to at most {} or raise the hard limit \
                 (LimitNOFILE= in the systemd unit, ulimit -Hn)",
                connections_within(hard)
            )));
        }
    }
    let soft = match own.current {
        Some(soft) if soft >= need => Some(soft),
        None => None,
        Some(_) => Some(need),
    };
    Ok(Rlimit {
        current: soft,
        maximum: own.maximum,
    })
}

/// `--check-config`: whether this process's limit allows the configuration.
pub fn check(connections: u32) -> Result<(), StartError> {
    plan(connections, &getrlimit(Resource::Nofile)).map(drop)
}

/// Raises this process's soft limit to what `connections` needs and returns
/// the limit to give the front.
pub fn raise(connections: u32) -> Result<srpc_os::Rlimit, StartError> {
    let own = getrlimit(Resource::Nofile);
    let want = plan(connections, &own)?;
    if want.current != own.current {
        setrlimit(Resource::Nofile, want).map_err(|e| {
            StartError::Check(format!(
                "raising the soft RLIMIT_NOFILE to {:?} for limits.connections = \
                 {connections}: {e}",
                want.current
            ))
        })?;
        tracing::info!(
            from = ?own.current,
            to = ?want.current,
            "raised the soft RLIMIT_NOFILE for limits.connections = {connections}"
        );
    }
    Ok(srpc_os::Rlimit {
        resource: srpc_os::Resource::Nofile,
        soft: want.current,
        hard: want.maximum,
    })
}

/// A reload may not raise `limits.connections` past what the front's limit,
/// fixed at start, allows.
pub fn check_reload(connections: u32, front: &srpc_os::Rlimit) -> Result<(), String> {
    let need = front_needs(connections);
    match front.soft {
        Some(fds) if fds < need => Err(format!(
            "limits.connections = {connections} needs {need} file descriptors in the front, \
             which has {fds} since start: restart srpcd to raise it (or keep \
             limits.connections at most {})",
            connections_within(fds)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(soft: Option<u64>, hard: Option<u64>) -> Rlimit {
        Rlimit {
            current: soft,
            maximum: hard,
        }
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_need_within_the_hard_one() {
        assert_eq!(front_needs(1024), 2112);
        let got = plan(1024, &limit(Some(1024), Some(524_288))).unwrap();
        assert_eq!((got.current, got.maximum), (Some(2112), Some(524_288)));
        // Already enough: kept as it is.
        let got = plan(100, &limit(Some(5000), Some(6000))).unwrap();
        assert_eq!(got.current, Some(5000));
        let got = plan(100, &limit(None, None)).unwrap();
        assert_eq!(got.current, None);
    }

    #[test]
    fn a_hard_limit_below_the_need_is_refused_naming_the_numbers() {
        let e = plan(1024, &limit(Some(1024), Some(1024)))
            .unwrap_err()
            .to_string();
        for part in [
            "limits.connections = 1024",
            "2112",
            "1024",
            "at most 480",
            "LimitNOFILE=",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        let front = srpc_os::Rlimit {
            resource: srpc_os::Resource::Nofile,
            soft: Some(2112),
            hard: Some(2112),
        };
        assert!(check_reload(1024, &front).is_ok());
        let e = check_reload(1025, &front).unwrap_err();
        assert!(e.contains("at most 1024"), "{e}");
    }
}
