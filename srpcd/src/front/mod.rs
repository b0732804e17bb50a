//! The front: TLS, the protocol, per-connection fid tables, limits and routing.
//! It runs as an unprivileged system user and asks the monitor for everything
//! that needs privilege.

mod accept;
mod budget;
mod conn;
mod monitor_client;
mod session;
mod tls;
mod worker_link;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, RwLock};

use srpc_proto::{ErrorCode, Message};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use conn::serve_connection;
pub use monitor_client::{MonitorClient, MonitorGone};
pub use tls::acceptor as tls_acceptor;
pub use worker_link::WorkerLink;

use crate::ipc::{Channel, FrontSettings, ToFront, ToMonitor, FRONT_CHANNEL_NAME};

/// State shared by all connections of the front.
pub struct Front {
    monitor: Arc<MonitorClient>,
    settings: RwLock<Arc<FrontSettings>>,
    acceptor: RwLock<Option<tokio_rustls::TlsAcceptor>>,
    links: Mutex<HashMap<u64, Arc<WorkerLink>>>,
    /// Signalled whenever a worker link is added.
    link_added: tokio::sync::Notify,
    sessions: Mutex<HashMap<String, u32>>,
    /// Live sessions by authentication id, for revocation.
    attached: Mutex<HashMap<u64, std::sync::Weak<session::Session>>>,
    sources: Mutex<HashMap<IpAddr, u32>>,
    draining: tokio::sync::watch::Sender<bool>,
    /// Request and reply bytes held, over all connections.
    budget: Arc<budget::Global>,
    /// Failed TLS handshakes, logged at most once a second: anyone who can
    /// connect can fail one, as fast as they can connect.
    handshakes_failed: Mutex<accept::Repeated>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Front {
    /// Logs a failed TLS handshake, at most once a second over all
    /// connections, with how many were left out since the last line.
    pub fn handshake_failed(&self, peer: std::net::SocketAddr, why: &dyn std::fmt::Display) {
        if let Some(suppressed) = lock(&self.handshakes_failed).admit(std::time::Instant::now()) {
            tracing::info!(%peer, suppressed, "TLS handshake failed: {why}");
        }
    }

    fn settings(&self) -> Arc<FrontSettings> {
        Arc::clone(
            &self
                .settings
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The link to worker `worker` of `user`: started from `fd` when the
    /// monitor hands it over (the worker's first attach), else the one
    /// already open. The monitor's replies for one new worker are routed to
    /// their requests concurrently, so one without the fd may be handled
    /// before the one that carries it: it waits (bounded) for the link to be
    /// added rather than call a starting worker gone.
    async fn link(
        &self,
        worker: u64,
        user: &str,
        fd: Option<OwnedFd>,
    ) -> Result<Arc<WorkerLink>, Message> {
        if let Some(fd) = fd {
            let std_stream = std::os::unix::net::UnixStream::from(fd);
            let stream = std_stream
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(std_stream))
                .map_err(|e| Message::error(ErrorCode::Internal, format!("worker link: {e}")))?;
            let link = WorkerLink::start(worker, user.to_owned(), stream);
            let mut links = lock(&self.links);
            links.retain(|_, l| !l.is_down());
            links.insert(worker, Arc::clone(&link));
            drop(links);
            self.link_added.notify_waiters();
            return Ok(link);
        }
        let gone = || Message::error(ErrorCode::Unavailable, "the user's worker is gone");
        let deadline = tokio::time::Instant::now() + LINK_WAIT;
        loop {
            let added = self.link_added.notified();
            tokio::pin!(added);
            // Registered before the look, so an insert in between is not missed.
            added.as_mut().enable();
            match lock(&self.links).get(&worker) {
                Some(l) if l.user == user && !l.is_down() => return Ok(Arc::clone(l)),
                // Known and down, or another user's: no waiting helps.
                Some(_) => return Err(gone()),
                None => {}
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return Err(gone());
            }
        }
    }

    /// Counts a new session of `user`; false when the user is at the limit.
    fn session_started(&self, user: &str) -> bool {
        let max = self.settings().sessions_per_user;
        let mut sessions = lock(&self.sessions);
        let n = sessions.entry(user.to_owned()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn session_ended(&self, user: &str) {
        let mut sessions = lock(&self.sessions);
        if let Some(n) = sessions.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sessions.remove(user);
            }
        }
    }

    /// Admits a connection from `ip` if the total and per-source limits allow
    /// (a source is an IPv4 address or an IPv6 /64, as the monitor counts).
    fn admit(self: &Arc<Self>, ip: IpAddr, open: usize) -> Option<SourceGuard> {
        let ip = crate::source::source_key(ip);
        let settings = self.settings();
        if open >= settings.connections as usize {
            return None;
        }
        let mut sources = lock(&self.sources);
        let n = sources.entry(ip).or_insert(0);
        if *n >= settings.connections_per_source {
            return None;
        }
        *n += 1;
        Some(SourceGuard {
            front: Arc::clone(self),
            ip,
        })
    }
}

/// Holds one connection's place in the per-source count.
struct SourceGuard {
    front: Arc<Front>,
    ip: IpAddr,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut sources = lock(&self.front.sources);
        if let Some(n) = sources.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sources.remove(&self.ip);
            }
        }
    }
}

/// Runs the front on `listener` until the monitor closes the channel or
/// `shutdown` resolves; then stops accepting and lets open connections finish
/// their in-flight requests.
pub async fn run(
    listener: TcpListener,
    chan: Channel,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), MonitorGone> {
    let (configure_tx, mut configure_rx) = mpsc::unbounded_channel();
    let monitor = MonitorClient::start(chan, configure_tx);
    // Nothing is served before the monitor has sent settings and credentials.
    let first = configure_rx.recv().await.ok_or(MonitorGone)?;
    let front = Arc::new(Front {
        monitor,
        settings: RwLock::new(Arc::new(placeholder_settings())),
        acceptor: RwLock::new(None),
        links: Mutex::new(HashMap::new()),
        link_added: tokio::sync::Notify::new(),
        sessions: Mutex::new(HashMap::new()),
        attached: Mutex::new(HashMap::new()),
        sources: Mutex::new(HashMap::new()),
        draining: tokio::sync::watch::Sender::new(false),
        budget: Arc::default(),
        handshakes_failed: Mutex::new(accept::Repeated::new()),
    });
    tls::apply(&front, first);
    let reconfigure = Arc::clone(&front);
    // Ends when the monitor's channel closes: the front stops serving then.
    let (gone_tx, mut monitor_gone) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        while let Some(env) = configure_rx.recv().await {
            match env.msg {
                ToFront::Revoke { auth } => {
                    reconfigure.revoke(auth);
                    let done = ToMonitor::Revoked { auth };
                    reconfigure.monitor.notify(&done).await;
                }
                _ => tls::apply(&reconfigure, env),
            }
        }
        drop(gone_tx);
    });
    tokio::spawn(report_stats(Arc::clone(&front)));
    let open = Arc::new(());
    tokio::pin!(shutdown);
    let mut backoff = accept::Backoff::default();
    let mut accept_failed = accept::Repeated::new();
    let mut refused = accept::Repeated::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            _ = &mut monitor_gone => {
                tracing::error!("the monitor closed its channel; stopping");
                break;
            }
            accepted = accept_after(&listener, backoff.pause()) => match accepted {
                Ok(a) => {
                    backoff.accepted();
                    a
                }
                Err(e) => {
                    backoff.failed(&e);
                    if let Some(suppressed) = accept_failed.admit(std::time::Instant::now()) {
                        tracing::warn!(
                            suppressed,
                            pause_ms = backoff.pause().as_millis(),
                            "accept: {e}"
                        );
                    }
                    continue;
                }
            },
        };
        // Replies are small TLS records written one by one: without this,
        // Nagle and delayed ACKs stall pipelined calls by ~40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(%peer, "TCP_NODELAY: {e}");
        }
        // Arc strong count minus ours: connections open now.
        let Some(guard) = front.admit(peer.ip(), Arc::strong_count(&open) - 1) else {
            // A flood past the limit would otherwise write a line per attempt.
            if let Some(suppressed) = refused.admit(std::time::Instant::now()) {
                tracing::warn!(%peer, suppressed, "connection refused: connection limit reached");
            }
            continue;
        };
        let acceptor = front
            .acceptor
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(acceptor) = acceptor else { continue };
        let front = Arc::clone(&front);
        let token = Arc::clone(&open);
        tokio::spawn(async move {
            serve_connection(front, acceptor, tcp, peer).await;
            drop(guard);
            drop(token);
        });
    }
    // Drain: connections stop reading, answer what is in flight, and close.
    front.draining.send_replace(true);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while Arc::strong_count(&open) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::info!(unfinished = Arc::strong_count(&open) - 1, "front stopped");
    Ok(())
}

/// How often the front tells the monitor its sessions' fids and calls.
const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends the sessions' fids and calls to the monitor when they changed, until
/// the front stops.
async fn report_stats(front: Arc<Front>) {
    let mut last = Vec::new();
    let mut tick = tokio::time::interval(STATS_EVERY);
    loop {
        tick.tick().await;
        let stats = front.session_stats();
        if stats == last {
            continue;
        }
        for chunk in stats.chunks(crate::ipc::MAX_STATS) {
            let msg = ToMonitor::SessionStats {
                stats: chunk.to_vec(),
            };
            front.monitor.notify(&msg).await;
        }
        last = stats;
    }
}

/// How long a request waits for a worker link the monitor is handing over.
const LINK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Accepts after `pause` (the backoff while out of descriptors). Dropped by the
/// loop's `select!` when it stops: both the sleep and the accept are
/// cancel-safe.
async fn accept_after(
    listener: &TcpListener,
    pause: std::time::Duration,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    listener.accept().await
}

/// How long open connections have to finish their requests at shutdown.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// The environment variable that tells the front how many runtime threads
/// to run (`workers.front_threads`, set by the monitor).
pub const THREADS_ENV: &str = "SRPC_FRONT_THREADS";

/// The runtime `workers.front_threads` asks for: one thread (no cross-thread
/// wake-ups) for 1, a multi-thread runtime of that many threads otherwise.
/// The monitor always sets it (from a checked config); a missing or bad value
/// is the config's default, 2.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let threads = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| (1..=crate::config::MAX_FRONT_THREADS as usize).contains(&n))
        .unwrap_or(2);
    if threads == 1 {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
}

/// The front process: hardens itself, adopts its end of the monitor channel
/// (fd 3), takes the TLS listener the monitor sends first, serves until SIGTERM
/// or until the monitor goes, then drains.
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    harden()?;
    let mut fds = srpc_os::listen_fds()?;
    let Some((fd, name)) = fds.pop() else {
        return Err("no monitor channel passed (LISTEN_FDS)".into());
    };
    if !fds.is_empty() || name.as_deref() != Some(FRONT_CHANNEL_NAME) {
        return Err(
            format!("expected only the {FRONT_CHANNEL_NAME} fd (started by srpcd only)").into(),
        );
    }
    rustix::io::ioctl_fionbio(&fd, true)?;
    let chan = Channel::new(tokio_seqpacket::UnixSeqpacket::try_from(fd)?);
    let first = chan.recv::<ToFront>().await?;
    let listener = match first {
        Some(crate::ipc::Envelope {
            msg: ToFront::Listener,
            fd: Some(fd),
            ..
        }) => std::net::TcpListener::from(fd),
        _ => return Err("the monitor did not send the TLS listener first".into()),
    };
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    run(listener, chan, async move {
        sigterm.recv().await;
    })
    .await?;
    Ok(())
}

/// The front holds the TLS key and sees passwords in transit: no core dumps,
/// no ptrace or /proc/<pid>/mem by other processes of its uid (audit L3), and
/// SIGTERM when the monitor dies, so it never serves without one.
fn harden() -> Result<(), Box<dyn std::error::Error>> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    debug_assert_eq!(getrlimit(Resource::Core).maximum, Some(0));
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
    // The monitor may have died before the line above took effect.
    if rustix::process::getppid().is_none_or(rustix::process::Pid::is_init) {
        return Err("the monitor is gone".into());
    }
    Ok(())
}

fn placeholder_settings() -> FrontSettings {
    let d = crate::config::Limits::default();
    FrontSettings {
        connections: d.connections,
        connections_per_source: d.connections_per_source,
        sessions_per_user: d.sessions_per_user,
        max_message: d.max_message,
        max_fids: d.fids_per_connection,
        max_pending: d.pending_requests,
        connection_buffer_bytes: d.connection_buffer_bytes,
        total_buffer_bytes: d.total_buffer_bytes,
        allow_tls12: false,
        auth_per_connection: d.auth_conversations_per_connection,
        unauthenticated_timeout_secs: u32::try_from(d.unauthenticated_timeout.as_secs())
            .unwrap_or(u32::MAX),
    }
}

impl ToFront {
    /// The authentication a reply is about (none for `Configure`).
    pub fn auth(&self) -> Option<u64> {
        match self {
            ToFront::Configure { .. } | ToFront::Listener | ToFront::Revoke { .. } => None,
            ToFront::AuthStep { auth }
            | ToFront::Failed { auth, .. }
            | ToFront::Worker { auth, .. } => Some(*auth),
        }
    }
}
