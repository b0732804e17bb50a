//! The monitor: root, never reads network bytes. It starts the front, checks
//! it is the front that connects, and answers the front's small set of typed
//! requests: PAM steps, the worker for an authenticated user, session ends.

mod acl;
mod auth;
mod child_log;
mod clone;
mod handlers;
mod launch;
mod startup;
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
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_seqpacket::UnixSeqpacketListener;

pub use startup::StartError;

use crate::config::Config;
use crate::ipc::{Channel, FrontSettings, ToFront, ToMonitor};
use crate::lockout::Lockout;
use crate::pam::{self, AuthenticatedUser, Transaction};
use crate::users::Account;
use auth::{lock, Driver, Outcome};
use workers::{Spawner, Worker, Workers};

/// How long the front has to connect after it starts, and to drain at shutdown.
const FRONT_GRACE: Duration = Duration::from_secs(10);

enum Auth {
    Running {
        aname: String,
        answers: mpsc::Sender<AuthAnswers>,
        task: tokio::task::JoinHandle<()>,
    },
    Authenticated {
        aname: String,
        user: AuthenticatedUser,
        tx: Transaction,
    },
    Attached {
        aname: String,
        user: String,
    },
}

struct Monitor {
    config_path: PathBuf,
    config: Config,
    chan: Arc<Channel>,
    auths: HashMap<u64, Auth>,
    workers: Workers,
    spawner: Spawner,
    cloner: clone::Cloner,
    clones: HashMap<String, clone::UserClone>,
    lockout: Arc<Mutex<Lockout>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    pam: pam::Settings,
}

/// Runs srpcd until SIGTERM/SIGINT or until the front dies.
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), StartError> {
    startup::check_selinux(&config)?;
    pam::check_service_file(&config.pam.service).map_err(|e| StartError::Check(e.to_string()))?;
    let tls = startup::read_tls(&config)?;
    let pin = startup::pin(&tls.cert)?;
    let (front_bin, worker_bin, launcher) = startup::libexec(&config)?;
    launch::init(launcher);
    let front_account = Account::lookup(&config.workers.front_user)
        .map_err(|e| StartError::Check(format!("front user: {e}")))?;
    if front_account.uid == 0 {
        return Err(StartError::Check("the front user must not be root".into()));
    }

    let runtime = &config.tree.runtime_dir;
    startup::make_dir(runtime, 0o755, 0, 0)?;
    let monitor_dir = runtime.join("monitor");
    // Only the front's user (and root) can reach the monitor socket.
    startup::make_dir(&monitor_dir, 0o700, front_account.uid, front_account.gid)?;
    let socket_path = monitor_dir.join("monitor.sock");
    let _ = std::fs::remove_file(&socket_path);
    let mut listener = UnixSeqpacketListener::bind(&socket_path)
        .map_err(StartError::io(format!("binding {}", socket_path.display())))?;
    // Connecting needs write permission on the socket: the front's user only.
    std::os::unix::fs::chown(
        &socket_path,
        Some(front_account.uid),
        Some(front_account.gid),
    )
    .map_err(StartError::io(format!("chown {}", socket_path.display())))?;

    let tcp = std::net::TcpListener::bind(config.listen)
        .map_err(StartError::io(format!("listening on {}", config.listen)))?;
    tracing::info!(listen = %config.listen, %pin, "srpcd starting; clients pin the server certificate as {pin}");

    let mut front = spawn_front(&front_bin, OwnedFd::from(tcp), &socket_path, &front_account)?;
    let chan = accept_front(&mut listener, &front, &front_account).await?;
    drop(listener);
    let _ = std::fs::remove_file(&socket_path);
    let chan = Arc::new(chan);
    send_configure(&chan, &config, &tls).await?;
    drop(tls);

    let (outcomes, mut outcome_rx) = mpsc::unbounded_channel();
    let mut m = Monitor {
        config_path,
        pam: pam::Settings::from(&config.pam),
        lockout: Arc::new(Mutex::new(Lockout::new(&config.limits))),
        spawner: Spawner {
            program: worker_bin,
        },
        cloner: clone::Cloner {
            tree_root: config.tree.root.clone(),
            users_dir: config.tree.runtime_dir.join("users"),
            handler_idle_secs: u32::try_from(config.workers.idle_timeout.as_secs())
                .unwrap_or(u32::MAX),
        },
        clones: HashMap::new(),
        config,
        chan: Arc::clone(&chan),
        auths: HashMap::new(),
        workers: Workers::default(),
        outcomes,
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::io("signals"))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::io("signals"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(StartError::io("signals"))?;
    let mut sigchld = signal(SignalKind::child()).map_err(StartError::io("signals"))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let _ = sd_notify_ready();
    loop {
        tokio::select! {
            received = chan.recv::<ToMonitor>() => match received {
                Ok(Some(env)) => m.request(env.msg, &env.payload).await,
                Ok(None) => {
                    tracing::error!("the front closed its channel");
                    break;
                }
                Err(e) => tracing::error!("{e}"),
            },
            Some(outcome) = outcome_rx.recv() => m.outcome(outcome).await,
            _ = sigchld.recv() => {
                if !matches!(front.try_wait(), Ok(None)) {
                    tracing::error!("the front exited");
                    break;
                }
                m.reap_exited().await;
            }
            _ = tick.tick() => m.reap_idle(),
            _ = sighup.recv() => m.reload().await,
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    m.shutdown(&mut front).await;
    Ok(())
}

fn sd_notify_ready() -> std::io::Result<()> {
    // Type=notify: tell systemd we are serving (no-op without NOTIFY_SOCKET).
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    sock.send_to(b"READY=1", PathBuf::from(path))?;
    Ok(())
}

fn spawn_front(
    program: &Path,
    tcp: OwnedFd,
    socket: &Path,
    account: &Account,
) -> Result<Child, StartError> {
    let mut cmd = ListenFdCommand::new(program, tcp, "srpc-tls");
    cmd.arg("--monitor-socket")
        .arg(socket)
        .env("PATH", "/usr/bin:/bin")
        .credentials(Credentials {
            uid: account.uid,
            gid: account.gid,
            groups: account.groups.clone(),
        });
    for key in ["RUST_LOG", "JOURNAL_STREAM"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    let tag = launch::Tag {
        role: launch::Role::Front,
        user: account.name.clone(),
        endpoint: None,
    };
    launch::prepare(cmd, tag)
        .and_then(launch::Prepared::spawn)
        .map_err(StartError::io(format!("starting {}", program.display())))
}

/// Accepts the front's connection, and only the front's: the kernel's
/// `SO_PEERCRED` must name the process we started, running as its user.
async fn accept_front(
    listener: &mut UnixSeqpacketListener,
    front: &Child,
    account: &Account,
) -> Result<Channel, StartError> {
    let deadline = tokio::time::Instant::now() + FRONT_GRACE;
    loop {
        let sock = tokio::time::timeout_at(deadline, listener.accept())
            .await
            .map_err(|_| {
                StartError::Check("the front did not connect to the monitor in time".into())
            })?
            .map_err(StartError::io("accepting the front"))?;
        let cred = sock.peer_cred().map_err(StartError::io("SO_PEERCRED"))?;
        let pid_ok = cred.pid().and_then(|p| u32::try_from(p).ok()) == Some(front.id());
        if pid_ok && cred.uid() == account.uid {
            return Ok(Channel::new(sock));
        }
        tracing::warn!(
            pid = ?cred.pid(),
            uid = cred.uid(),
            "refused a monitor connection that is not from the front"
        );
    }
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
        allow_tls12: config.tls.min_version == crate::config::TlsVersion::V1_2,
    };
    let cert_len = u32::try_from(tls.cert.len())
        .map_err(|_| StartError::Check("TLS certificate file too large".into()))?;
    let mut payload = zeroize::Zeroizing::new(Vec::with_capacity(tls.cert.len() + tls.key.len()));
    payload.extend_from_slice(&tls.cert);
    payload.extend_from_slice(&tls.key);
    chan.send(&ToFront::Configure { settings, cert_len }, &payload, None)
        .await
        .map_err(|e| StartError::Check(e.to_string()))
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
                Some(attached @ Auth::Attached { .. }) => {
                    self.auths.insert(auth, attached);
                }
                None => {}
            },
            ToMonitor::Attach { auth } => self.attach(auth).await,
            ToMonitor::SessionEnd { auth } => {
                if let Some(Auth::Attached { user, .. }) = self.auths.remove(&auth) {
                    if let Some(w) = self.workers.by_user.get_mut(&user) {
                        w.sessions = w.sessions.saturating_sub(1);
                        if w.sessions == 0 {
                            w.idle_since = Some(Instant::now());
                            // The user's last session: the clone goes.
                            if let Some(c) = self.clones.remove(&user) {
                                c.remove();
                            }
                        }
                    }
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
        let checked = lock(&self.lockout).check(&user, rhost);
        if let Err(locked) = checked {
            tracing::warn!(user, %rhost, "{locked}");
            return self.fail(auth, locked.code(), locked.message()).await;
        }
        let tx = Transaction::start(&self.pam, &user, rhost);
        let (answers, answer_rx) = mpsc::channel(1);
        let driver = Driver {
            auth,
            user,
            rhost,
            tx,
            answers: answer_rx,
            chan: Arc::clone(&self.chan),
            outcomes: self.outcomes.clone(),
            lockout: Arc::clone(&self.lockout),
        };
        let task = tokio::spawn(driver.run());
        self.auths.insert(
            auth,
            Auth::Running {
                aname,
                answers,
                task,
            },
        );
    }

    async fn outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Authenticated { auth, user, tx } => {
                let Some(Auth::Running { aname, .. }) = self.auths.remove(&auth) else {
                    // Aborted meanwhile.
                    tokio::spawn(async move { drop(tx.finish().await) });
                    return;
                };
                tracing::info!(auth, user = %user.pam_user, "authenticated");
                self.auths
                    .insert(auth, Auth::Authenticated { aname, user, tx });
                let step = AuthStep::Authenticated.encode();
                self.reply(ToFront::AuthStep { auth }, &step, None).await;
            }
            Outcome::Ended { auth } => {
                self.auths.remove(&auth);
            }
        }
    }

    /// The worker for an authentication's user, started if need be.
    async fn attach(&mut self, auth: u64) {
        let (user, aname, fresh) = match self.auths.remove(&auth) {
            Some(Auth::Authenticated { aname, user, tx }) => {
                (user.pam_user.clone(), aname, Some((user, tx)))
            }
            Some(Auth::Attached { aname, user }) => (user, aname, None),
            other => {
                if let Some(other) = other {
                    self.auths.insert(auth, other);
                }
                return self
                    .fail(
                        auth,
                        ErrorCode::AuthRequired,
                        "authentication is not complete",
                    )
                    .await;
            }
        };
        let new_session = fresh.is_some();
        let linked = match self.worker_link(&user, fresh).await {
            Ok(linked) => self.sync_clone(&user, &aname).map(|()| linked),
            Err(e) => Err(e),
        };
        match linked {
            Ok((id, fd)) => {
                self.auths.insert(
                    auth,
                    Auth::Attached {
                        aname: aname.clone(),
                        user: user.clone(),
                    },
                );
                if let Some(w) = self.workers.by_user.get_mut(&user) {
                    if new_session {
                        w.sessions += 1;
                    }
                    w.idle_since = None;
                }
                let msg = ToFront::Worker {
                    auth,
                    worker: id,
                    user,
                };
                self.reply(msg, &[], fd.as_ref()).await;
            }
            Err(message) => {
                tracing::error!(user, "no worker: {message}");
                if !new_session {
                    self.auths.insert(auth, Auth::Attached { aname, user });
                }
                self.fail(
                    auth,
                    ErrorCode::Unavailable,
                    "the user's worker could not start",
                )
                .await;
            }
        }
    }

    /// Returns the user's worker id and, if the front does not have its link
    /// yet (a new process), the front's end of the link.
    async fn worker_link(
        &mut self,
        user: &str,
        fresh: Option<(AuthenticatedUser, Transaction)>,
    ) -> Result<(u64, Option<OwnedFd>), String> {
        let running = self
            .workers
            .by_user
            .get_mut(user)
            .filter(|w| !w.stopping)
            .and_then(|w| match w.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => Some(w.id),
                _ => None,
            });
        if let Some(id) = running {
            if let Some((_, tx)) = fresh {
                tokio::spawn(async move { drop(tx.finish().await) });
            }
            return Ok((id, None));
        }
        // No live worker: reuse the user's PAM session if one is open (the
        // worker died under live sessions), else open one with this login.
        let old = self.workers.by_user.remove(user);
        let carried = old.as_ref().map_or(0, |w| w.sessions);
        let (account, pam) = match (old, fresh) {
            (Some(mut old), fresh) if old.pam.is_some() => {
                if let Some((_, tx)) = fresh {
                    tokio::spawn(async move { drop(tx.finish().await) });
                }
                (old.account.clone(), old.pam.take())
            }
            (_, Some((authenticated, tx))) => {
                let session = tx.open_session().await.map_err(|e| e.to_string())?;
                (authenticated.account, Some(session))
            }
            (_, None) => return Err("no PAM session to start a worker in".into()),
        };
        let env = pam.as_ref().map(|s| s.env().to_vec()).unwrap_or_default();
        let id = self.workers.next_id();
        match self
            .spawner
            .spawn(&account, &env, &self.cloner.tree_of(user))
        {
            Ok((child, link)) => {
                tracing::info!(user, uid = account.uid, pid = child.id(), "worker started");
                self.workers.by_user.insert(
                    user.to_owned(),
                    Worker {
                        id,
                        account,
                        child: Some(child),
                        pam,
                        sessions: carried,
                        idle_since: (carried == 0).then(Instant::now),
                        stopping: false,
                    },
                );
                Ok((id, Some(link)))
            }
            Err(e) => {
                if let Some(session) = pam {
                    tokio::spawn(async move { drop(session.close().await) });
                }
                Err(e.to_string())
            }
        }
    }
}

impl Monitor {
    /// Clones (or re-syncs) the user's session tree at `aname`.
    fn sync_clone(&mut self, user: &str, aname: &str) -> Result<(), String> {
        let worker = self
            .workers
            .by_user
            .get(user)
            .ok_or_else(|| format!("no worker for {user}"))?;
        let run_as = clone::RunAs {
            account: worker.account.clone(),
            env: worker
                .pam
                .as_ref()
                .map(|s| s.env().to_vec())
                .unwrap_or_default(),
        };
        let mut slot = self.clones.remove(user);
        let synced = self.cloner.sync(&mut slot, &run_as, aname);
        if let Some(c) = slot {
            self.clones.insert(user.to_owned(), c);
        }
        synced
    }

    /// Collects workers that exited. A worker without sessions is done: its
    /// PAM session closes. One that died under live sessions is restarted in
    /// the same PAM session when the front next asks for it.
    async fn reap_exited(&mut self) {
        let mut done = Vec::new();
        for (user, w) in &mut self.workers.by_user {
            let Some(child) = w.child.as_mut() else {
                continue;
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    if w.stopping || w.sessions == 0 {
                        tracing::info!(user, %status, "worker stopped");
                        done.push(user.clone());
                    } else {
                        tracing::warn!(user, %status, "worker died with sessions open");
                        w.child = None;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(user, "waiting for worker: {e}"),
            }
        }
        for user in done {
            if let Some(w) = self.workers.by_user.remove(&user) {
                if let Some(session) = w.pam {
                    if let Err(e) = session.close().await {
                        tracing::error!(user, "closing the PAM session: {e}");
                    }
                }
            }
        }
    }

    fn reap_idle(&mut self) {
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

    /// SIGHUP: reread the configuration and the TLS files, and hand them to
    /// the front. A bad file keeps everything as it was.
    async fn reload(&mut self) {
        let config = match Config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                return tracing::error!("reload refused, keeping the running configuration: {e}")
            }
        };
        if config.listen != self.config.listen || config.tree != self.config.tree {
            tracing::warn!("listen address and tree changes take effect at restart");
        }
        let tls = match startup::read_tls(&config) {
            Ok(t) => t,
            Err(e) => {
                return tracing::error!("reload refused, keeping the running configuration: {e}")
            }
        };
        if let Err(e) = send_configure(&self.chan, &config, &tls).await {
            return tracing::error!("reload: {e}");
        }
        self.pam = pam::Settings::from(&config.pam);
        *lock(&self.lockout) = Lockout::new(&config.limits);
        self.config = config;
        tracing::info!("configuration and TLS credentials reloaded");
    }

    /// Drains: the front stops accepting and answers what is in flight; then
    /// workers stop and PAM sessions close.
    async fn shutdown(&mut self, front: &mut Child) {
        tracing::info!("shutting down");
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
            self.reap_exited().await;
            let alive = self.workers.by_user.values().any(|w| w.child.is_some());
            if !alive || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (_, c) in self.clones.drain() {
            c.remove();
        }
        for (user, mut w) in self.workers.by_user.drain() {
            if let Some(mut child) = w.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(session) = w.pam.take() {
                if let Err(e) = session.close().await {
                    tracing::error!(user, "closing the PAM session: {e}");
                }
            }
        }
    }
}

/// `srpcd --check-config`: everything `run` checks before it serves, without
/// binding or starting anything. Returns the server certificate's pin.
pub fn check(config: &Config) -> Result<String, StartError> {
    startup::check_selinux(config)?;
    pam::check_service_file(&config.pam.service).map_err(|e| StartError::Check(e.to_string()))?;
    let tls = startup::read_tls(config)?;
    startup::libexec(config)?;
    let front = Account::lookup(&config.workers.front_user)
        .map_err(|e| StartError::Check(format!("front user: {e}")))?;
    if front.uid == 0 {
        return Err(StartError::Check("the front user must not be root".into()));
    }
    startup::pin(&tls.cert)
}
