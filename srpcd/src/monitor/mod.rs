//! The monitor: root, never reads network bytes. It starts the front, checks
//! it is the front that connects, and answers the front's small set of typed
//! requests: PAM steps, the worker for an authenticated user, session ends.

mod admin;
mod attach;
mod attrs;
mod auth;
mod cgroup;
mod child_log;
mod classify;
mod clone;
mod fd_limit;
mod fsat;
mod handlers;
mod labeling;
mod launch;
mod notify;
pub(crate) mod security;
mod start_limit;
pub(crate) mod startup;
mod user_limits;
mod workers;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use srpc_os::{Credentials, ListenFdCommand};
use srpc_proto::{AuthAnswers, AuthStep, ErrorCode};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio_seqpacket::UnixSeqpacket;

pub use startup::StartError;

use crate::config::Config;
use crate::ipc::{Channel, FrontSettings, ToFront, ToMonitor, FRONT_CHANNEL_NAME};
use crate::lockout::Lockout;
use crate::pam::{self, AuthenticatedUser, Transaction};
use crate::users::Account;
use auth::{lock, Driver, Outcome};
use workers::{Spawner, Workers};

/// How long the front has to connect after it starts, and to drain at shutdown.
const FRONT_GRACE: Duration = Duration::from_secs(10);

enum Auth {
    Running {
        aname: String,
        /// The client's source as the limits count it (IPv6 by /64).
        source: IpAddr,
        /// The client's address.
        rhost: IpAddr,
        answers: mpsc::Sender<AuthAnswers>,
        task: tokio::task::JoinHandle<()>,
    },
    Authenticated {
        aname: String,
        rhost: IpAddr,
        user: AuthenticatedUser,
        tx: Transaction,
    },
    Attached(Attached),
}

/// An authentication whose session attached: it lives until the session ends.
#[derive(Clone)]
struct Attached {
    aname: String,
    user: String,
    rhost: IpAddr,
    /// When the session started (wall clock, for `srpcctl sessions`).
    started: std::time::SystemTime,
}

struct Monitor {
    config_path: PathBuf,
    config: Config,
    chan: Arc<Channel>,
    auths: HashMap<u64, Auth>,
    workers: Workers,
    /// What the tasks the loop starts need (and where they report).
    ctx: attach::Ctx,
    clones: HashMap<String, attach::CloneSlot>,
    lockout: Arc<Mutex<Lockout>>,
    pam: pam::Settings,
    /// The front's `RLIMIT_NOFILE`, fixed at start (a reload checks against it).
    front_nofile: srpc_os::Rlimit,
    /// The admin interface's view and signals.
    hub: admin::Hub,
    /// What `Status` shows that the loop does not change.
    status: admin::types::Status,
    /// When srpcd started.
    started: Instant,
    /// systemd's notifications.
    notify: notify::Notifier,
    /// The last STATUS line sent.
    notified: String,
}

/// Runs srpcd until SIGTERM/SIGINT (`Ok`) or until the front dies
/// (`StartError::FrontDied`).
pub async fn run(
    config_path: PathBuf,
    config: Config,
    levels: crate::logging::LevelHandle,
) -> Result<(), StartError> {
    // First: a SIGTERM that arrives while srpcd starts (a `systemctl stop`
    // right after the start) is then a clean stop at the loop's first turn,
    // not death by the default action.
    let mut signals = Signals::new()?;
    let selinux = startup::check_selinux(&config)?;
    let security = security::Security::init(&config, selinux)?;
    pam::check_service_file(&config.pam.service).map_err(|e| StartError::Check(e.to_string()))?;
    let tls = startup::read_tls(&config)?;
    let pin = startup::pin(&tls.cert)?;
    let (front_bin, worker_bin, launcher) = startup::libexec(&config)?;
    launch::init(launcher);
    let front_account = front_account(&config)?;
    let front_nofile = fd_limit::raise(config.limits.connections)?;

    // Before anything starts: a second srpcd on the same bus stops here.
    let lockout = Arc::new(Mutex::new(Lockout::new(&config.limits)));
    let admin_side = start_admin(&config, &pin, levels, &lockout, security.clone()).await?;
    let AdminSide {
        hub,
        requests: mut request_rx,
        _bus,
    } = admin_side;
    // Before the first child: every one starts contained (audit L1).
    cgroup::init(config.workers.cgroups);
    cgroup::before_front(&front_account).await;

    let runtime = &config.tree.runtime_dir;
    startup::make_dir(runtime, 0o755, 0, 0)?;

    let tcp = std::net::TcpListener::bind(config.listen)
        .map_err(StartError::io(format!("listening on {}", config.listen)))?;
    tracing::info!(listen = %config.listen, %pin, "srpcd starting; clients pin the server certificate as {pin}");

    // The front's channel is a socketpair whose other end only the front
    // inherits: nothing on the filesystem to connect to, swap or chown, and
    // whoever speaks on it is the front by construction.
    let (ours, theirs) = UnixSeqpacket::pair().map_err(StartError::io("monitor channel"))?;
    let mut front = spawn_front(
        &front_bin,
        OwnedFd::from(theirs),
        &front_account,
        front_nofile,
        config.workers.front_threads,
    )?;
    let chan = Arc::new(Channel::new(ours));
    chan.send(&ToFront::Listener, &[], Some(tcp.as_fd()))
        .await
        .map_err(|e| StartError::FrontDied(format!("handing the front its listener: {e}")))?;
    drop(tcp);
    send_configure(&chan, &config, &tls).await?;
    drop(tls);

    let (events, mut event_rx) = mpsc::unbounded_channel();
    let ctx = task_ctx(&config, runtime, worker_bin, security, events)?;
    let mut m = Monitor {
        config_path,
        pam: pam::Settings::from(&config.pam),
        status: startup_status(&config, &pin),
        started: Instant::now(),
        hub,
        notify: notify::Notifier::from_env(),
        notified: String::new(),
        lockout,
        ctx,
        clones: HashMap::new(),
        config,
        chan: Arc::clone(&chan),
        auths: HashMap::new(),
        workers: Workers::default(),
        front_nofile,
    };
    let failure = event_loop(
        &mut m,
        &mut front,
        &mut signals,
        &mut event_rx,
        &mut request_rx,
    )
    .await?;
    m.shutdown(&mut front).await;
    // Whatever the children left behind, the front user's included.
    cgroup::stop(&front_account).await;
    // A dead front is a failure, so that Restart=on-failure restarts srpcd.
    match failure {
        Some(why) => Err(StartError::FrontDied(why.to_owned())),
        None => Ok(()),
    }
}

/// The signals the monitor's loop answers, caught from the start of `run`.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    chld: Signal,
}

impl Signals {
    fn new() -> Result<Signals, StartError> {
        let catch = |kind| signal(kind).map_err(StartError::io("signals"));
        Ok(Signals {
            term: catch(SignalKind::terminate())?,
            int: catch(SignalKind::interrupt())?,
            hup: catch(SignalKind::hangup())?,
            chld: catch(SignalKind::child())?,
        })
    }
}

/// The monitor's loop: one event at a time until SIGTERM/SIGINT (`None`) or
/// the front's end (`Some(why)`); the snapshot is published after each.
async fn event_loop(
    m: &mut Monitor,
    front: &mut Child,
    signals: &mut Signals,
    event_rx: &mut mpsc::UnboundedReceiver<attach::Event>,
    request_rx: &mut mpsc::UnboundedReceiver<admin::Request>,
) -> Result<Option<&'static str>, StartError> {
    let chan = Arc::clone(&m.chan);
    let Signals {
        term: sigterm,
        int: sigint,
        hup: sighup,
        chld: sigchld,
    } = signals;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    m.notify.ready(&format!("serving on {}", m.config.listen));
    // Why srpcd stops, when it is a failure (not SIGTERM/SIGINT).
    let failure = loop {
        tokio::select! {
            received = chan.recv::<ToMonitor>() => match received {
                Ok(Some(env)) => m.request(env.msg, &env.payload).await,
                Ok(None) => {
                    tracing::error!("the front closed its channel");
                    break Some("the front closed its channel");
                }
                Err(e) => tracing::error!("{e}"),
            },
            Some(event) = event_rx.recv() => m.event(event).await,
            _ = sigchld.recv() => {
                if !matches!(front.try_wait(), Ok(None)) {
                    tracing::error!("the front exited");
                    break Some("the front exited");
                }
                m.reap_exited();
            }
            _ = tick.tick() => m.reap_idle(),
            _ = sighup.recv() => drop(m.reload("SIGHUP").await),
            Some(request) = request_rx.recv() => m.admin(request).await,
            _ = sigterm.recv() => break None,
            _ = sigint.recv() => break None,
        }
        m.publish();
    };
    Ok(failure)
}

/// The loop's end of the admin interface, and the bus connection serving it
/// (held until srpcd stops: dropping it leaves the bus).
struct AdminSide {
    hub: admin::Hub,
    requests: mpsc::UnboundedReceiver<admin::Request>,
    _bus: Option<zbus::Connection>,
}

/// Serves the D-Bus interface if `admin.dbus` says so. No system bus is a
/// warning (srpcd runs on without it); a name someone else owns refuses the
/// start.
async fn start_admin(
    config: &Config,
    pin: &str,
    levels: crate::logging::LevelHandle,
    lockout: &Arc<Mutex<Lockout>>,
    security: Option<Arc<security::Security>>,
) -> Result<AdminSide, StartError> {
    let (snapshot, snapshot_rx) = tokio::sync::watch::channel(Arc::new(admin::Snapshot {
        status: startup_status(config, pin),
        started: Instant::now(),
        sessions: Vec::new(),
        workers: Vec::new(),
        handlers: Vec::new(),
        tree_root: config.tree.root.clone(),
        pam_service: config.pam.service.clone(),
        admin_group: config.admin.group.clone(),
    }));
    let (notices, notice_rx) = mpsc::unbounded_channel();
    let (requests, request_rx) = mpsc::unbounded_channel();
    let bus = if config.admin.dbus {
        let served =
            admin::bus::Admin::new(snapshot_rx, requests, levels, Arc::clone(lockout), security);
        match admin::bus::serve(served, notice_rx).await {
            Ok(conn) => {
                tracing::info!("serving {} on the system bus", admin::bus::BUS_NAME);
                Some(conn)
            }
            Err(e @ admin::bus::ServeError::NameTaken) => {
                return Err(StartError::Check(e.to_string()));
            }
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    } else {
        None
    };
    Ok(AdminSide {
        hub: admin::Hub {
            snapshot,
            notices,
            worker_started: HashMap::new(),
            revoking: Vec::new(),
            session_stats: HashMap::new(),
            handlers: HashMap::new(),
        },
        requests: request_rx,
        _bus: bus,
    })
}

/// The parts of `Status` fixed at start.
fn startup_status(config: &Config, pin: &str) -> admin::types::Status {
    admin::types::Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: 0,
        selinux: startup::selinux_mode()
            .map_or("unknown", srpc_os::selinux::Mode::as_str)
            .to_owned(),
        listen: config.listen.to_string(),
        pin: pin.to_owned(),
        interface: admin::bus::INTERFACE.to_owned(),
        sessions: 0,
        workers: 0,
        logins_in_progress: 0,
    }
}

fn spawn_front(
    program: &Path,
    channel: OwnedFd,
    account: &Account,
    nofile: srpc_os::Rlimit,
    threads: u32,
) -> Result<Child, StartError> {
    let mut cmd = ListenFdCommand::new(program, channel, FRONT_CHANNEL_NAME);
    // What its connections need (fd_limit), set by the launcher as root.
    cmd.rlimit(nofile);
    cgroup::place(&mut cmd, cgroup::Place::Front)
        .map_err(StartError::io("the front's cgroup".to_owned()))?;
    cmd.env("PATH", "/usr/bin:/bin").credentials(Credentials {
        uid: account.uid,
        gid: account.gid,
        groups: account.groups.clone(),
    });
    for key in ["RUST_LOG", "JOURNAL_STREAM"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    // Its runtime is built before it hears from the monitor.
    cmd.env(crate::front::THREADS_ENV, threads.to_string());
    let tag = launch::Tag {
        role: launch::Role::Front,
        user: account.name.clone(),
        endpoint: None,
    };
    launch::prepare(cmd, tag)
        .and_then(launch::Prepared::spawn)
        .map_err(StartError::io(format!("starting {}", program.display())))
}

async fn send_configure(
    chan: &Channel,
    config: &Config,
    tls: &startup::TlsFiles,
) -> Result<(), StartError> {
    let l = &config.limits;
    let settings = FrontSettings {
        connections: l.connections,
        connections_per_source: l.connections_per_source,
        sessions_per_user: l.sessions_per_user,
        max_message: l.max_message,
        max_fids: l.fids_per_connection,
        max_pending: l.pending_requests,
        connection_buffer_bytes: l.connection_buffer_bytes,
        total_buffer_bytes: l.total_buffer_bytes,
        allow_tls12: config.tls.min_version == crate::config::TlsVersion::V1_2,
        auth_per_connection: l.auth_conversations_per_connection,
        unauthenticated_timeout_secs: u32::try_from(l.unauthenticated_timeout.as_secs())
            .unwrap_or(u32::MAX),
    };
    let cert_len = u32::try_from(tls.cert.len())
        .map_err(|_| StartError::Check("TLS certificate file too large".into()))?;
    let mut payload = zeroize::Zeroizing::new(Vec::with_capacity(tls.cert.len() + tls.key.len()));
    payload.extend_from_slice(&tls.cert);
    payload.extend_from_slice(&tls.key);
    chan.send(&ToFront::Configure { settings, cert_len }, &payload, None)
        .await
        .map_err(|e| StartError::FrontDied(format!("sending the front its settings: {e}")))
}

impl Monitor {
    async fn reply(&self, msg: ToFront, payload: &[u8], fd: Option<&OwnedFd>) {
        if let Err(e) = self.chan.send(&msg, payload, fd.map(AsFd::as_fd)).await {
            tracing::error!("{e}");
        }
    }

    async fn fail(&self, auth: u64, code: ErrorCode, message: impl Into<String>) {
        let msg = ToFront::Failed {
            auth,
            code: code.number(),
            message: message.into(),
        };
        self.reply(msg, &[], None).await;
    }

    async fn request(&mut self, msg: ToMonitor, payload: &[u8]) {
        match msg {
            ToMonitor::AuthStart {
                auth,
                user,
                aname,
                rhost,
            } => self.auth_start(auth, user, aname, &rhost).await,
            ToMonitor::AuthAnswer { auth } => {
                let answers = match AuthAnswers::decode(payload) {
                    Ok(a) => a,
                    Err(e) => return self.fail(auth, ErrorCode::Malformed, e.to_string()).await,
                };
                match self.auths.get(&auth) {
                    Some(Auth::Running { answers: tx, .. }) if tx.try_send(answers).is_ok() => {}
                    _ => {
                        self.fail(
                            auth,
                            ErrorCode::Protocol,
                            "no conversation waits for answers",
                        )
                        .await;
                    }
                }
            }
            ToMonitor::AuthAbort { auth } => match self.auths.remove(&auth) {
                Some(Auth::Running { task, .. }) => task.abort(),
                Some(Auth::Authenticated { tx, .. }) => {
                    tokio::spawn(async move { drop(tx.finish().await) });
                }
                // An attached authentication lives until its session ends.
                Some(attached @ Auth::Attached(_)) => {
                    self.auths.insert(auth, attached);
                }
                None => {}
            },
            ToMonitor::Attach { auth } => self.attach(auth).await,
            ToMonitor::Revoked { auth } => self.revoked(auth),
            ToMonitor::SessionStats { stats } => {
                // Kept only for sessions the monitor knows: the front cannot
                // make up entries.
                for s in stats {
                    if matches!(self.auths.get(&s.auth), Some(Auth::Attached(_))) {
                        self.hub.session_stats.insert(s.auth, s);
                    }
                }
            }
            ToMonitor::SessionEnd { auth } => {
                if let Some(Auth::Attached(a)) = self.auths.remove(&auth) {
                    self.session_ended(auth, &a.user, "client");
                }
            }
        }
    }

    async fn auth_start(&mut self, auth: u64, user: String, aname: String, rhost: &str) {
        if self.auths.contains_key(&auth) {
            return self
                .fail(auth, ErrorCode::Protocol, "authentication id in use")
                .await;
        }
        // The front validated it; the monitor does not take its word (the
        // clone is made from this path).
        if let Err(e) = srpc_proto::validate_path(&aname, srpc_proto::HARD_LIMITS.max_name) {
            return self
                .fail(auth, ErrorCode::Malformed, format!("aname: {e}"))
                .await;
        }
        let Ok(rhost) = rhost.parse::<IpAddr>() else {
            return self
                .fail(auth, ErrorCode::Internal, "bad client address")
                .await;
        };
        // Bounded before anything starts (audit H3): each conversation is a
        // PAM thread in this process.
        let source = crate::source::source_key(rhost);
        let limits = &self.config.limits;
        let running: Vec<IpAddr> = self
            .auths
            .values()
            .filter_map(|a| match a {
                Auth::Running { source, .. } => Some(*source),
                _ => None,
            })
            .collect();
        let from_source = running.iter().filter(|s| **s == source).count();
        let over = if running.len() >= limits.auth_conversations as usize {
            Some(format!(
                "{} logins are in progress, the most srpcd runs at once (limits.auth_conversations)",
                running.len()
            ))
        } else if from_source >= limits.auth_conversations_per_source as usize {
            Some(format!(
                "{from_source} logins from this source are in progress \
                 (limits.auth_conversations_per_source)"
            ))
        } else {
            None
        };
        if let Some(message) = over {
            crate::audit::Event::LockedOut {
                user: &user,
                remote: rhost,
                reason: &message,
            }
            .emit();
            return self.fail(auth, ErrorCode::LimitExceeded, message).await;
        }
        let begun = lock(&self.lockout).begin(&user, rhost);
        let attempt = match begun {
            Ok(attempt) => attempt,
            Err(locked) => {
                crate::audit::Event::LockedOut {
                    user: &user,
                    remote: rhost,
                    reason: &locked.to_string(),
                }
                .emit();
                return self.fail(auth, locked.code(), locked.message()).await;
            }
        };
        let tx = Transaction::start(&self.pam, &user, rhost);
        let (answers, answer_rx) = mpsc::channel(1);
        let driver = Driver {
            auth,
            user,
            rhost,
            tx,
            answers: answer_rx,
            chan: Arc::clone(&self.chan),
            events: self.ctx.events.clone(),
            lockout: Arc::clone(&self.lockout),
            attempt,
            deadline: self.config.pam.auth_timeout,
        };
        let task = tokio::spawn(driver.run());
        self.auths.insert(
            auth,
            Auth::Running {
                aname,
                source,
                rhost,
                answers,
                task,
            },
        );
    }

    async fn event(&mut self, event: attach::Event) {
        match event {
            attach::Event::Auth(outcome) => self.outcome(outcome).await,
            attach::Event::Started {
                user,
                id,
                started,
                first,
            } => self.started(user, id, started, first).await,
            attach::Event::Synced(synced) => self.synced(synced, None).await,
            attach::Event::Resynced { user } => self.resynced(&user),
            attach::Event::Handler(report) => self.hub.handler(report),
        }
    }

    async fn outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Authenticated { auth, user, tx } => {
                let Some(Auth::Running { aname, rhost, .. }) = self.auths.remove(&auth) else {
                    // Aborted meanwhile.
                    tokio::spawn(async move { drop(tx.finish().await) });
                    return;
                };
                crate::audit::Event::AuthSucceeded {
                    user: &user.pam_user,
                    remote: rhost,
                }
                .emit();
                self.auths.insert(
                    auth,
                    Auth::Authenticated {
                        aname,
                        rhost,
                        user,
                        tx,
                    },
                );
                let step = AuthStep::Authenticated.encode();
                self.reply(ToFront::AuthStep { auth }, &step, None).await;
            }
            Outcome::Ended { auth } => {
                self.auths.remove(&auth);
            }
        }
    }

    /// Collects workers that exited. A worker without sessions is done: its
    /// PAM session closes. One that died under live sessions is restarted in
    /// the same PAM session when the front next asks for it.
    fn reap_exited(&mut self) {
        let mut done = Vec::new();
        for (user, w) in &mut self.workers.by_user {
            let Some(child) = w.child.as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    crate::audit::Event::WorkerExited {
                        user,
                        pid: child.id(),
                        status: &status.to_string(),
                        context: w.security.as_ref().map(|s| s.worker.as_str()),
                    }
                    .emit();
                    if w.stopping || (w.sessions == 0 && w.pending == 0) {
                        done.push(user.clone());
                    } else {
                        tracing::warn!(user, "the worker died with sessions open");
                        w.child = None;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(user, "waiting for worker: {e}"),
            }
        }
        for user in done {
            if let Some(w) = self.workers.by_user.remove(&user) {
                // Whatever the worker or its handlers left ends with it.
                cgroup::user_done(&user, w.account.uid);
                if let (Some(_), Some(s)) = (&w.security, &self.ctx.security) {
                    s.release(&user);
                }
                if let Some(session) = w.pam {
                    // Session modules may take their time: off the loop.
                    tokio::spawn(close_session(user, session));
                }
            }
        }
    }

    fn reap_idle(&mut self) {
        cgroup::tidy(|user| self.workers.by_user.contains_key(user));
        let now = Instant::now();
        for user in self.workers.idle(self.config.workers.idle_timeout, now) {
            if let Some(w) = self.workers.by_user.get_mut(&user) {
                w.stopping = true;
                if let Some(child) = &w.child {
                    tracing::info!(user, "reaping idle worker");
                    workers::terminate(child);
                }
            }
        }
    }

    /// SIGHUP (or `Reload` over D-Bus, `trigger` says which): reread the
    /// configuration and the TLS files, and hand them to the front. A bad
    /// file keeps everything as it was; either way the audit trail says so.
    async fn reload(&mut self, trigger: &str) -> Result<(), String> {
        self.notify.reloading();
        let result = self.try_reload().await.map(|()| {
            let users = self.resync_all();
            tracing::info!("re-syncing the trees of {users} user(s) with live sessions");
        });
        self.notified.clear();
        self.notify
            .ready(&format!("serving on {}", self.config.listen));
        let outcome = match &result {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("refused, keeping the running configuration: {e}"),
        };
        crate::audit::Event::ConfigReloaded {
            trigger,
            result: &outcome,
        }
        .emit();
        result
    }

    async fn try_reload(&mut self) -> Result<(), String> {
        let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        fd_limit::check_reload(config.limits.connections, &self.front_nofile)?;
        if config.listen != self.config.listen || config.tree != self.config.tree {
            tracing::warn!("listen address and tree changes take effect at restart");
        }
        let tls = startup::read_tls(&config).map_err(|e| e.to_string())?;
        send_configure(&self.chan, &config, &tls)
            .await
            .map_err(|e| e.to_string())?;
        self.pam = pam::Settings::from(&config.pam);
        // Failure counts survive a reload; only the limits change.
        lock(&self.lockout).reconfigure(&config.limits);
        self.ctx.spawner.call_timeout = config.workers.call_timeout;
        self.config = config;
        Ok(())
    }

    /// Drains: the front stops accepting and answers what is in flight; then
    /// workers stop and PAM sessions close.
    async fn shutdown(&mut self, front: &mut Child) {
        tracing::info!("shutting down");
        self.notify.stopping();
        workers::terminate(front);
        let deadline = Instant::now() + FRONT_GRACE;
        while matches!(front.try_wait(), Ok(None)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if matches!(front.try_wait(), Ok(None)) {
            tracing::warn!("the front did not drain in time; killing it");
            let _ = front.kill();
            let _ = front.wait();
        }
        for (_, auth) in self.auths.drain() {
            if let Auth::Running { task, .. } = auth {
                task.abort();
            }
        }
        for w in self.workers.by_user.values_mut() {
            w.stopping = true;
            if let Some(child) = &w.child {
                workers::terminate(child);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.reap_exited();
            let alive = self.workers.by_user.values().any(|w| w.child.is_some());
            if !alive || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (_, slot) in self.clones.drain() {
            let taken = slot.try_lock().ok().and_then(|mut c| c.take());
            if let Some(c) = taken {
                let _ = tokio::task::spawn_blocking(self.ctx.cloner.remove(c)).await;
            }
        }
        for (user, mut w) in self.workers.by_user.drain() {
            if let Some(mut child) = w.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(session) = w.pam.take() {
                // Bounded: a session module that hangs does not keep srpcd.
                let closing = close_session(user, session);
                if tokio::time::timeout(FRONT_GRACE, closing).await.is_err() {
                    tracing::warn!("a PAM session did not close in time");
                }
            }
        }
    }
}

impl Monitor {
    /// A session is over (its authentication is already out of the table):
    /// counted off its worker, audited, signalled; the user's last session
    /// takes the clone and the handlers with it.
    fn session_ended(&mut self, auth: u64, user: &str, reason: &str) {
        self.hub.session_stats.remove(&auth);
        crate::audit::Event::SessionEnded {
            session: auth,
            user,
            reason,
        }
        .emit();
        let _ = self.hub.notices.send(admin::Notice::SessionEnded {
            id: auth,
            user: user.to_owned(),
            reason: reason.to_owned(),
        });
        if let Some(w) = self.workers.by_user.get_mut(user) {
            w.sessions = w.sessions.saturating_sub(1);
        }
        self.maybe_idle(user);
    }
}

async fn close_session(user: String, session: pam::Session) {
    if let Err(e) = session.close().await {
        tracing::error!(user, "closing the PAM session: {e}");
    }
}

/// What the tasks the loop starts share: the cloner (its `users` and
/// `staging` made afresh), the worker spawner, the SELinux state.
fn task_ctx(
    config: &Config,
    runtime: &Path,
    worker_bin: PathBuf,
    security: Option<Arc<security::Security>>,
    events: mpsc::UnboundedSender<attach::Event>,
) -> Result<attach::Ctx, StartError> {
    let cloner = clone::Cloner::new(
        config.tree.root.clone(),
        runtime,
        u32::try_from(config.workers.idle_timeout.as_secs()).unwrap_or(u32::MAX),
        security.as_ref().map(|s| s.open_types()),
        events.clone(),
    )
    .map_err(StartError::io(format!(
        "preparing {}/users and {}/staging",
        runtime.display(),
        runtime.display()
    )))?;
    Ok(attach::Ctx {
        cloner: Arc::new(cloner),
        spawner: Spawner {
            program: worker_bin,
            call_timeout: config.workers.call_timeout,
            canonical_root: config.tree.root.clone(),
        },
        events,
        security,
    })
}

/// `srpcd --check-config`: everything `run` checks before it serves, without
/// binding or starting anything. Returns the server certificate's pin.
pub fn check(config: &Config) -> Result<String, StartError> {
    let selinux = startup::check_selinux(config)?;
    security::Security::init(config, selinux)?;
    pam::check_service_file(&config.pam.service).map_err(|e| StartError::Check(e.to_string()))?;
    let tls = startup::read_tls(config)?;
    startup::libexec(config)?;
    front_account(config)?;
    fd_limit::check(config.limits.connections)?;
    startup::pin(&tls.cert)
}

/// The front's account: any but root.
fn front_account(config: &Config) -> Result<Account, StartError> {
    let account = Account::lookup(&config.workers.front_user)
        .map_err(|e| StartError::Check(format!("front user: {e}")))?;
    if account.uid == 0 {
        return Err(StartError::Check("the front user must not be root".into()));
    }
    Ok(account)
}
