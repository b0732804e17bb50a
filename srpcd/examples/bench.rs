//! The sRPC benchmark (run by `make bench`, which makes the user, the tree and
//! the PAM service first). It prints figures; it is not a test.
//!
//! Two paths to the same echo handler binary, 64-byte calls, one connection
//! each, at 1, 16 and 64 calls in flight:
//!
//! - **srpcd**: the client library over TLS to srpc-front, then the user's
//!   worker, then the per-user echo handler srpcd starts: one session, one fid
//!   walked to `/echo` and shared by every calling task.
//! - **direct**: the floor. The same binary started with `--socket PATH` as the
//!   same user, called over one Unix stream connection with the handler-link
//!   protocol (`Tappend{fid: 0}` → `Rappend`), pipelined the same way.
//!
//! The difference is what TLS, the front and the worker cost per call.
#![allow(clippy::print_stdout)]

#[path = "support/launch.rs"]
mod launch;

use std::collections::HashMap;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use srpc::client::{Client, Fid, PasswordConversation};
use srpc_proto::{check, decode_bytes, encode_into, Check, Frame, Message, HARD_LIMITS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// Calls in flight at each level.
const LEVELS: [usize; 3] = [1, 16, 64];
/// Calls per level unless `--calls` says otherwise.
const DEFAULT_CALLS: usize = 20_000;
/// Calls made before measuring: the handler is started, links are open.
const WARM_UP: usize = 500;
const PAYLOAD_LEN: usize = 64;

struct Args {
    dir: PathBuf,
    service: String,
    front_user: String,
    user: String,
    calls: usize,
}

fn parse() -> Result<Args, String> {
    let mut flags: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(flag, value);
    }
    let mut take = |flag: &str| flags.remove(flag).ok_or_else(|| format!("missing {flag}"));
    let args = Args {
        dir: PathBuf::from(take("--dir")?),
        service: take("--pam-service")?,
        front_user: take("--front-user")?,
        user: take("--user")?,
        calls: match flags.remove("--calls") {
            None => DEFAULT_CALLS,
            Some(n) => n
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("--calls {n}: not a positive number"))?,
        },
    };
    match flags.keys().next() {
        Some(unknown) => Err(format!("unknown flag {unknown}")),
        None => Ok(args),
    }
}

fn password(dir: &Path, user: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(dir.join("passwords")).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")).map(str::to_owned))
        .ok_or_else(|| format!("no password for {user}"))
}

fn payload() -> Bytes {
    (b'!'..=b'~').cycle().take(PAYLOAD_LEN).collect()
}

/// One echo call on some path; checks the reply is the payload.
trait Echo: Send + Sync + 'static {
    fn call(&self) -> impl Future<Output = Result<(), String>> + Send;
}

fn echoed(reply: &[u8], payload: &[u8]) -> Result<(), String> {
    if reply == payload {
        Ok(())
    } else {
        Err(format!(
            "the echo answered {} bytes that are not the {} sent",
            reply.len(),
            payload.len()
        ))
    }
}

/// The srpcd path: one fid, shared by every calling task (calls on one `Fid`
/// may run concurrently; each is a pipelined request).
struct ThroughSrpcd {
    fid: Fid,
    payload: Bytes,
}

impl Echo for ThroughSrpcd {
    async fn call(&self) -> Result<(), String> {
        let reply = self
            .fid
            .append(self.payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        echoed(&reply, &self.payload)
    }
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Message>>>>;

fn lock(waiting: &Waiting) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Message>>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The direct path: a handler-link client as small as the protocol allows, a
/// writer task that batches whatever frames are queued into one write, and a
/// reader task that hands each reply to the call waiting for its seq.
struct Direct {
    out: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Waiting,
    next_seq: AtomicU64,
    payload: Bytes,
}

impl Direct {
    fn new(stream: UnixStream, payload: Bytes) -> Direct {
        let (rd, wr) = stream.into_split();
        let (out, rx) = mpsc::unbounded_channel();
        let waiting = Waiting::default();
        tokio::spawn(write_frames(wr, rx));
        tokio::spawn(read_frames(rd, Arc::clone(&waiting)));
        Direct {
            out,
            waiting,
            next_seq: AtomicU64::new(1),
            payload,
        }
    }
}

impl Echo for Direct {
    async fn call(&self) -> Result<(), String> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(128);
        let msg = Message::Tappend {
            fid: 0,
            data: self.payload.clone(),
        };
        encode_into(&Frame::new(seq, msg), &mut frame);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(seq, tx);
        self.out
            .send(frame)
            .map_err(|_| "the connection to the echo handler is closed".to_owned())?;
        match rx.await {
            Ok(Message::Rappend { data }) => echoed(&data, &self.payload),
            Ok(other) => Err(format!("the echo handler answered {other:?}")),
            Err(_) => Err("the echo handler closed the connection".into()),
        }
    }
}

async fn write_frames(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while let Ok(next) = rx.try_recv() {
            batch.extend_from_slice(&next);
        }
        if wr.write_all(&batch).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_frames(mut rd: OwnedReadHalf, waiting: Waiting) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match check(&buf, &HARD_LIMITS) {
                Check::Complete(len) => {
                    let bytes = buf.split_to(len).freeze();
                    let Ok(frame) = decode_bytes(&bytes, &HARD_LIMITS) else {
                        break 'read;
                    };
                    // A reply nobody waits for is a broken peer: stop.
                    let Some(tx) = lock(&waiting).remove(&frame.seq) else {
                        break 'read;
                    };
                    let _ = tx.send(frame.msg);
                }
                Check::Invalid(_) => break 'read,
                Check::Incomplete => break,
            }
        }
        buf.reserve(64 * 1024);
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Every call still waiting fails at once instead of hanging.
    lock(&waiting).clear();
}

/// What one level measured.
struct Level {
    in_flight: usize,
    elapsed: Duration,
    /// Per-call latency, send to reply, sorted.
    latencies: Vec<Duration>,
}

impl Level {
    // Call counts are far below 2^52, where f64 starts to round.
    #[allow(clippy::cast_precision_loss)]
    fn calls_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The nearest-rank percentile, in µs.
    fn percentile_us(&self, p: usize) -> f64 {
        let n = self.latencies.len();
        let rank = (p * n).div_ceil(100).clamp(1, n);
        self.latencies[rank - 1].as_secs_f64() * 1e6
    }
}

/// Makes `calls` calls, `in_flight` at a time: that many tasks, each calling
/// until the shared count is used up.
async fn drive<E: Echo>(echo: &Arc<E>, in_flight: usize, calls: usize) -> Result<Level, String> {
    let issued = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..in_flight {
        let (echo, issued) = (Arc::clone(echo), Arc::clone(&issued));
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(calls / in_flight + 1);
            while issued.fetch_add(1, Ordering::Relaxed) < calls {
                let sent = Instant::now();
                echo.call().await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, String>(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(calls);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Level {
        in_flight,
        elapsed,
        latencies,
    })
}

async fn measure<E: Echo>(echo: E, calls: usize) -> Result<Vec<Level>, String> {
    let echo = Arc::new(echo);
    drive(&echo, 16, WARM_UP).await?;
    let mut levels = Vec::new();
    for in_flight in LEVELS {
        levels.push(drive(&echo, in_flight, calls).await?);
    }
    Ok(levels)
}

/// The echo handler on a socket of its own, as `user`; killed when dropped.
struct DirectEcho {
    child: Child,
    socket: PathBuf,
}

impl DirectEcho {
    fn start(dir: &Path, user: &str) -> Result<DirectEcho, String> {
        let account = nix::unistd::User::from_name(user)
            .map_err(|e| format!("looking up {user}: {e}"))?
            .ok_or_else(|| format!("no user {user}"))?;
        let home = dir.join("direct");
        std::fs::create_dir(&home).map_err(|e| format!("{}: {e}", home.display()))?;
        std::os::unix::fs::chown(
            &home,
            Some(account.uid.as_raw()),
            Some(account.gid.as_raw()),
        )
        .map_err(|e| format!("{}: {e}", home.display()))?;
        let socket = home.join("echo.sock");
        let log = std::fs::File::create(dir.join("direct-echo.log")).map_err(|e| e.to_string())?;
        // The binary srpcd runs for /echo; std drops the supplementary groups
        // along with uid and gid.
        let child = Command::new(dir.join("tree/echo"))
            .arg("--socket")
            .arg(&socket)
            .uid(account.uid.as_raw())
            .gid(account.gid.as_raw())
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting the direct echo handler: {e}"))?;
        Ok(DirectEcho { child, socket })
    }

    async fn connect(&mut self) -> Result<UnixStream, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(&self.socket).await {
                Ok(stream) => return Ok(stream),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("{}: {e}", self.socket.display()))
                }
                Err(_) => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the direct echo handler exited ({status})"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for DirectEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Results {
    srpcd: Vec<Level>,
    direct: Vec<Level>,
}

async fn run(args: &Args) -> Result<Results, String> {
    let payload = payload();
    let mut srpcd = launch::start(&args.dir, &args.service, &args.front_user)?;
    let result = through_srpcd(args, &srpcd, payload.clone()).await;
    srpcd.stop();
    let srpcd_levels = match result {
        Ok(levels) => levels,
        Err(e) => {
            let log = std::fs::read_to_string(&srpcd.log).unwrap_or_default();
            return Err(format!("{e}\n--- srpcd log ---\n{log}"));
        }
    };

    println!("== direct Unix socket: echo --socket, as {}", args.user);
    let mut echo = DirectEcho::start(&args.dir, &args.user)?;
    let stream = echo.connect().await?;
    let direct = measure(Direct::new(stream, payload), args.calls).await?;
    Ok(Results {
        srpcd: srpcd_levels,
        direct,
    })
}

async fn through_srpcd(
    args: &Args,
    srpcd: &launch::Srpcd,
    payload: Bytes,
) -> Result<Vec<Level>, String> {
    println!(
        "== srpcd on {}: TLS → front → worker → /echo, as {}",
        srpcd.addr, args.user
    );
    let client = Client::dial(&srpcd.addr, "localhost", srpcd.trust())
        .await
        .map_err(|e| format!("dial: {e}"))?;
    let mut conv = PasswordConversation::new(password(&args.dir, &args.user)?);
    let session = client
        .auth(&args.user, "/", &mut conv)
        .await
        .map_err(|e| format!("{} login: {e}", args.user))?;
    let fid = session
        .walk("/echo")
        .await
        .map_err(|e| format!("walk /echo: {e}"))?;
    measure(ThroughSrpcd { fid, payload }, args.calls).await
}

fn report(results: &Results, calls: usize) {
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!();
    println!(
        "{PAYLOAD_LEN}-byte echo, one connection, {calls} calls per level ({build} build, {cores} cores)"
    );
    println!(
        "{:<30}{:>9}{:>12}{:>11}{:>11}",
        "path", "in flight", "calls/s", "p50 (µs)", "p99 (µs)"
    );
    for (name, levels) in [
        ("TLS→front→worker→handler", &results.srpcd),
        ("direct Unix socket → handler", &results.direct),
    ] {
        for l in levels {
            println!(
                "{name:<30}{:>9}{:>12.0}{:>11.1}{:>11.1}",
                l.in_flight,
                l.calls_per_sec(),
                l.percentile_us(50),
                l.percentile_us(99)
            );
        }
    }
    println!();
    if let (Some(s), Some(d)) = (results.srpcd.first(), results.direct.first()) {
        println!(
            "extra cost of the srpcd path at {} in flight: {:+.1} µs per call (p50)",
            s.in_flight,
            s.percentile_us(50) - d.percentile_us(50)
        );
        println!("  (the latency of TLS, srpc-front and the worker: the handler and its link are the same)");
    }
    if let (Some(s), Some(d)) = (results.srpcd.last(), results.direct.last()) {
        println!(
            "throughput at {} in flight: the srpcd path makes {:.0}% of the direct calls/s ({:.1}× fewer)",
            s.in_flight,
            100.0 * s.calls_per_sec() / d.calls_per_sec(),
            d.calls_per_sec() / s.calls_per_sec()
        );
    }
    println!(
        "client, srpcd and the handler share this machine's {cores} cores; the client runs 2 tokio worker threads"
    );
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "bench: {e}\nusage: bench --dir DIR --pam-service S --front-user F --user U [--calls N]"
            );
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(results) => {
            report(&results, args.calls);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
