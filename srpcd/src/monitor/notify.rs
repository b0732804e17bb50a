//! systemd's notification protocol (`Type=notify`, sd_notify(3)): READY once
//! srpcd serves, RELOADING around a reload (with the `MONOTONIC_USEC`
//! systemd wants to match it), STOPPING when it starts to drain, STATUS lines
//! for `systemctl status`. A no-op without `NOTIFY_SOCKET`. Failures are
//! logged once and never stop srpcd: the notifications are courtesy, the
//! service works without them.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where notifications go, from `NOTIFY_SOCKET` (a path, or `@name` for the
/// abstract namespace). Read once at start: srpcd's children never see it.
pub struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    /// The notifier for this process's `NOTIFY_SOCKET`.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|raw| {
            let addr = parse(raw.as_encoded_bytes());
            if let Err(e) = &addr {
                tracing::warn!("NOTIFY_SOCKET {raw:?}: {e}; not notifying systemd");
            }
            addr.ok()
        });
        Notifier { target }
    }

    /// Sends `state` (newline-separated `KEY=value` lines).
    fn send(&self, state: &str) {
        let Some(target) = &self.target else {
            return;
        };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), target));
        if let Err(e) = sent {
            tracing::warn!("notifying systemd ({state:?}): {e}");
        }
    }

    /// srpcd serves.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A reload begins; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(now.tv_nsec).unwrap_or(0) / 1000;
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the configuration"
        ));
    }

    /// srpcd drains and stops.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=draining: answering calls in flight, then stopping");
    }

    /// A status line.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }
}

/// `NOTIFY_SOCKET`'s value as an address.
fn parse(raw: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    match raw {
        [] => Err(std::io::Error::other("empty")),
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(raw)),
        _ => Err(std::io::Error::other(
            "neither an absolute path nor @abstract",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::net::UnixDatagram;

    use super::{parse, Notifier};

    #[test]
    fn an_abstract_notify_socket_is_reached_and_a_relative_one_refused() {
        let name = format!("@srpcd-test-notify-{}", std::process::id());
        let addr = parse(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier { target: Some(addr) };
        notifier.ready("serving on 127.0.0.1:1");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving on 127.0.0.1:1");

        let e = parse(b"relative/notify").unwrap_err();
        assert_eq!(e.to_string(), "neither an absolute path nor @abstract");
        assert!(parse(b"").is_err());
    }
}
