//! `make bench`: sRPC beside a gRPC peer (tonic) in the same run, and the
//! direct Unix-socket floor; run by `scripts/bench`, which makes the users,
//! the tree and the PAM service first. It prints figures; it is not a test.
//!
//! Three systems answer the same echo calls, closed loop:
//! - **sRPC**: client library → TLS → srpc-front → the user's worker → the
//!   per-user echo handler srpcd starts;
//! - **gRPC**: tonic client → TLS (HTTP/2) → a tonic echo server in a
//!   process of its own;
//! - **direct**: the same echo handler binary on a Unix socket of its own,
//!   no TLS, no front, no worker (the floor).
//!
//! Every point is measured on every system in each round, the order of the
//! systems turning round by round, and the medians of the rounds are
//! reported: this machine is noisy, and only a ratio from one run means
//! anything.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod direct;
mod figures;
mod grpc;
mod measure;
mod report;
mod srpc_path;

#[path = "../../srpcd/examples/support/launch.rs"]
mod launch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use measure::{drive, Echo, Sample};
use report::{Point, Report, System};

struct Args {
    dir: PathBuf,
    bins: PathBuf,
    service: String,
    front_user: String,
    user: String,
    new_users: Vec<String>,
    rounds: usize,
    window: Duration,
    /// Only these systems and points (for profiling one of them).
    systems: Vec<System>,
    points: Vec<Point>,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut flags: HashMap<String, String> = HashMap::new();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(flag.clone(), value.clone());
    }
    let mut take = |flag: &str| flags.remove(flag).ok_or_else(|| format!("missing {flag}"));
    let rounds = take("--rounds").unwrap_or_else(|_| "3".into());
    let seconds = take("--seconds").unwrap_or_else(|_| "1.5".into());
    let systems = match take("--systems") {
        Err(_) => vec![System::Srpc, System::Grpc, System::Direct],
        Ok(list) => list
            .split(',')
            .map(|name| System::parse(name).ok_or_else(|| format!("--systems: no system {name:?}")))
            .collect::<Result<_, _>>()?,
    };
    let all: Vec<Point> = report::POINTS
        .iter()
        .chain([&report::APPEND])
        .copied()
        .collect();
    let points = match take("--points") {
        Err(_) => all,
        Ok(list) => list
            .split(',')
            .map(|i| {
                i.parse::<usize>()
                    .ok()
                    .and_then(|i| all.get(i).copied())
                    .ok_or_else(|| format!("--points: {i:?} is not 0 to {}", all.len() - 1))
            })
            .collect::<Result<_, _>>()?,
    };
    let parsed = Args {
        dir: PathBuf::from(take("--dir")?),
        bins: PathBuf::from(take("--bin-dir")?),
        service: take("--pam-service")?,
        front_user: take("--front-user")?,
        user: take("--user")?,
        new_users: take("--new-users")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        rounds: rounds
            .parse()
            .ok()
            .filter(|&n| n >= 2)
            .ok_or_else(|| format!("--rounds {rounds}: at least 2"))?,
        window: seconds
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.2 && *s <= 60.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("--seconds {seconds}: from 0.2 to 60"))?,
        systems,
        points,
    };
    match flags.keys().next() {
        Some(unknown) => Err(format!("unknown flag {unknown}")),
        None if parsed.new_users.is_empty() => Err("--new-users: none given".into()),
        None => Ok(parsed),
    }
}

fn password(dir: &Path, user: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(dir.join("passwords")).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")).map(str::to_owned))
        .ok_or_else(|| format!("no password for {user}"))
}

fn ids_of(user: &str) -> Result<(u32, u32), String> {
    let account = nix::unistd::User::from_name(user)
        .map_err(|e| format!("looking up {user}: {e}"))?
        .ok_or_else(|| format!("no user {user}"))?;
    Ok((account.uid.as_raw(), account.gid.as_raw()))
}

/// What the bench's srpcd sets beyond the defaults: the front on one thread
/// (`workers.front_threads = 1`, not the default 2: see docs/architecture.md,
/// "Cost per call"), messages for a 1 MiB append, and enough sessions of one
/// user for the per-connection figure.
const CONFIG: &str = "front_threads = 1\n[limits]\nmax_message = 2097152\n\
                      sessions_per_user = 1024\nconnections_per_source = 1024\n";

/// Connections to open for the front's per-connection memory figure.
const IDLE_CONNECTIONS: usize = 100;
const WARM_UP: Duration = Duration::from_millis(200);

fn payload(len: usize) -> Bytes {
    (b'!'..=b'~').cycle().take(len).collect()
}

/// The three systems' connections (the most any point uses).
struct Conns {
    srpc: Vec<Arc<srpc_path::SrpcConn>>,
    grpc: Vec<Arc<grpc::GrpcConn>>,
    direct: Vec<Arc<direct::Direct>>,
}

async fn on<E: Echo>(
    all: &[Arc<E>],
    p: &Point,
    payload: &Bytes,
    w: Duration,
) -> Result<Sample, String> {
    drive(&all[..p.connections], p.in_flight, payload, WARM_UP, w).await
}

async fn sample(
    conns: &Conns,
    system: System,
    point: &Point,
    window: Duration,
) -> Result<Sample, String> {
    let payload = payload(point.payload);
    match system {
        System::Srpc => on(&conns.srpc, point, &payload, window).await,
        System::Grpc => on(&conns.grpc, point, &payload, window).await,
        System::Direct => on(&conns.direct, point, &payload, window).await,
    }
    .map_err(|e| format!("{} at {point}: {e}", system.name()))
}

async fn run(args: &Args) -> Result<Report, String> {
    let mut srpcd = launch::start_with(
        &args.dir,
        &args.service,
        &args.front_user,
        &args.bins,
        CONFIG,
    )?;
    let result = with_srpcd(args, &srpcd).await;
    srpcd.stop();
    result.map_err(|e| {
        let log = std::fs::read_to_string(&srpcd.log).unwrap_or_default();
        format!("{e}\n--- srpcd log ---\n{log}")
    })
}

async fn with_srpcd(args: &Args, srpcd: &launch::Srpcd) -> Result<Report, String> {
    let mut report = Report::new(args.rounds, args.window);
    let pw = password(&args.dir, &args.user)?;
    let (uid, gid) = ids_of(&args.user)?;
    let (front_uid, _) = ids_of(&args.front_user)?;

    println!(
        "== new users' first calls, and PAM alone ({} users)",
        args.new_users.len()
    );
    let mut held = Vec::new();
    for user in &args.new_users {
        let (first, conn) = figures::first_call(
            &srpcd.addr,
            srpcd.trust(),
            &args.service,
            user,
            &password(&args.dir, user)?,
        )
        .await?;
        report.first_calls.push(first);
        held.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for user in &args.new_users {
        let (u, _) = ids_of(user)?;
        let worker = figures::one_pid(u, "srpc-worker").await?;
        let handler = figures::one_pid(u, "echo").await?;
        report.worker_rss_kib.push(figures::rss_kib(worker)?);
        report
            .worker_private_kib
            .push(figures::private_kib(worker)?);
        report.handler_rss_kib.push(figures::rss_kib(handler)?);
        report
            .handler_private_kib
            .push(figures::private_kib(handler)?);
    }
    drop(held);

    println!("== the front's memory per idle authenticated connection ({IDLE_CONNECTIONS})");
    let front = figures::one_pid(front_uid, "srpc-front").await?;
    let open =
        async || srpc_path::SrpcConn::open(&srpcd.addr, srpcd.trust(), &args.user, &pw).await;
    let (per, idle) = figures::front_per_connection(front, IDLE_CONNECTIONS, open).await?;
    report.front_kib_per_connection = per;
    drop(idle);

    let connections = report::POINTS
        .iter()
        .map(|p| p.connections)
        .max()
        .unwrap_or(1);
    println!("== opening {connections} connections on each system");
    let key = std::fs::read_to_string(args.dir.join("server.key")).map_err(|e| e.to_string())?;
    let cert = std::fs::read_to_string(args.dir.join("server.crt")).map_err(|e| e.to_string())?;
    let grpc_server = grpc::GrpcServer::start(&args.dir, uid, gid, &cert, &key)?;
    let mut direct_echo = direct::DirectEcho::start(&args.dir, &args.user)?;
    let mut conns = Conns {
        srpc: Vec::new(),
        grpc: Vec::new(),
        direct: Vec::new(),
    };
    for _ in 0..connections {
        conns.srpc.push(Arc::new(
            srpc_path::SrpcConn::open(&srpcd.addr, srpcd.trust(), &args.user, &pw).await?,
        ));
        conns.grpc.push(Arc::new(
            grpc::GrpcConn::open(grpc_server.port, &cert).await?,
        ));
        conns
            .direct
            .push(Arc::new(direct::Direct::new(direct_echo.connect().await?)));
    }

    for round in 0..args.rounds {
        println!("== round {} of {}", round + 1, args.rounds);
        for point in &args.points {
            // The order turns each round, so no system always runs first
            // (after a pause) or last (after the others heated the caches).
            let mut order = args.systems.clone();
            let turn = round % order.len();
            order.rotate_left(turn);
            for system in order {
                let s = sample(&conns, system, point, args.window).await?;
                report.add(system, point, s);
            }
        }
    }
    drop(conns);
    Ok(report)
}

fn main() -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    if words.first().map(String::as_str) == Some("grpc-server") {
        return match words.get(1).map(|p| grpc::serve_main(p)) {
            Some(Ok(())) => ExitCode::SUCCESS,
            Some(Err(e)) => {
                eprintln!("grpc-server: {e}");
                ExitCode::FAILURE
            }
            None => {
                eprintln!("usage: srpc-bench grpc-server PORT");
                ExitCode::from(2)
            }
        };
    }
    let args = match parse(&words) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "srpc-bench: {e}\nusage: srpc-bench --dir DIR --bin-dir DIR --pam-service S \
                 --front-user F --user U --new-users U1,U2,… [--rounds N] [--seconds S] \
                 [--systems srpc,grpc,direct] [--points I,J,… (0-8: the table's rows)]"
            );
            return ExitCode::from(2);
        }
    };
    // The client side of every system: two tokio worker threads.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("srpc-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(report) => {
            report.print();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("srpc-bench FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
