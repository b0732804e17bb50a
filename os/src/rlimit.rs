//! Resource limits (`setrlimit`) a spawned process gets, named as pam_limits
//! names them in limits.conf.

use std::io;

/// A resource `setrlimit` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Resource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

const ALL: [(Resource, &str); 16] = [
    (Resource::As, "as"),
    (Resource::Core, "core"),
    (Resource::Cpu, "cpu"),
    (Resource::Data, "data"),
    (Resource::Fsize, "fsize"),
    (Resource::Locks, "locks"),
    (Resource::Memlock, "memlock"),
    (Resource::Msgqueue, "msgqueue"),
    (Resource::Nice, "nice"),
    (Resource::Nofile, "nofile"),
    (Resource::Nproc, "nproc"),
    (Resource::Rss, "rss"),
    (Resource::Rtprio, "rtprio"),
    (Resource::Rttime, "rttime"),
    (Resource::Sigpending, "sigpending"),
    (Resource::Stack, "stack"),
];

impl Resource {
    /// The resource limits.conf calls `item` (`nofile`, `nproc`, `core`, …).
    pub fn from_item(item: &str) -> Option<Resource> {
        ALL.iter().find(|(_, n)| *n == item).map(|(r, _)| *r)
    }

    /// Its limits.conf name.
    pub fn item(self) -> &'static str {
        ALL.iter().find(|(r, _)| *r == self).map_or("?", |(_, n)| n)
    }

    fn raw(self) -> libc::__rlimit_resource_t {
        match self {
            Resource::As => libc::RLIMIT_AS,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::Data => libc::RLIMIT_DATA,
            Resource::Fsize => libc::RLIMIT_FSIZE,
            Resource::Locks => libc::RLIMIT_LOCKS,
            Resource::Memlock => libc::RLIMIT_MEMLOCK,
            Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
            Resource::Nice => libc::RLIMIT_NICE,
            Resource::Nofile => libc::RLIMIT_NOFILE,
            Resource::Nproc => libc::RLIMIT_NPROC,
            Resource::Rss => libc::RLIMIT_RSS,
            Resource::Rtprio => libc::RLIMIT_RTPRIO,
            Resource::Rttime => libc::RLIMIT_RTTIME,
            Resource::Sigpending => libc::RLIMIT_SIGPENDING,
            Resource::Stack => libc::RLIMIT_STACK,
        }
    }
}

/// One limit: `None` is unlimited (`RLIM_INFINITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Which resource.
    pub resource: Resource,
    /// The soft limit.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

impl Rlimit {
    /// This process's current limit of `resource`.
    pub fn current(resource: Resource) -> io::Result<Rlimit> {
        let mut raw = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the live local `raw`.
        if unsafe { libc::getrlimit(resource.raw(), &raw mut raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let value = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
        Ok(Rlimit {
            resource,
            soft: value(raw.rlim_cur),
            hard: value(raw.rlim_max),
        })
    }

    /// Sets it for this process.
    pub(crate) fn apply(&self) -> io::Result<()> {
        let raw = libc::rlimit {
            rlim_cur: self.soft.unwrap_or(libc::RLIM_INFINITY),
            rlim_max: self.hard.unwrap_or(libc::RLIM_INFINITY),
        };
        // SAFETY: setrlimit reads the live local `raw`.
        if unsafe { libc::setrlimit(self.resource.raw(), &raw const raw) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn encode(&self) -> String {
        let v = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        format!("{}:{}:{}", self.resource.item(), v(self.soft), v(self.hard))
    }

    pub(crate) fn decode(text: &str) -> Result<Rlimit, String> {
        let bad = || format!("spec: bad rlimit {text:?}");
        let mut parts = text.split(':');
        let resource = parts.next().and_then(Resource::from_item).ok_or_else(bad)?;
        let mut value = || match parts.next() {
            Some("unlimited") => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| bad()),
            None => Err(bad()),
        };
        let soft = value()?;
        let hard = value()?;
        Ok(Rlimit {
            resource,
            soft,
            hard,
        })
    }
}
