//! The figures users ask about beside throughput: a new user's first call
//! next to what PAM alone takes, and the memory an idle worker, an idle
//! handler and an idle authenticated connection cost.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pam_client2::{conv_mock::Conversation, Context, Flag};
use srpc::client::Trust;

use crate::measure::{median, Echo};
use crate::srpc_path::SrpcConn;

/// One new user's first call (dial + auth + attach + walk + call; neither
/// the user's worker nor the handler runs yet) and that user's PAM alone.
pub struct FirstCall {
    pub total: Duration,
    pub pam: Duration,
}

/// `pam_authenticate`, `pam_acct_mgmt`, `pam_open_session` and its close,
/// what srpcd runs for a login, in this process with the same service file.
pub fn pam_alone(service: &str, user: &str, password: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let conv = Conversation::with_credentials(user, password);
    let mut ctx = Context::new(service, Some(user), conv).map_err(|e| format!("PAM: {e}"))?;
    ctx.authenticate(Flag::NONE)
        .map_err(|e| format!("PAM authenticate {user}: {e}"))?;
    ctx.acct_mgmt(Flag::NONE)
        .map_err(|e| format!("PAM account {user}: {e}"))?;
    let session = ctx
        .open_session(Flag::NONE)
        .map_err(|e| format!("PAM session {user}: {e}"))?;
    drop(session);
    Ok(start.elapsed())
}

/// The first call of a user whose worker is not running, then (the worker
/// and handler now idle) PAM alone for the same user. The connection is
/// returned so the worker stays up for the memory figures.
pub async fn first_call(
    addr: &str,
    trust: Trust,
    service: &str,
    user: &str,
    password: &str,
) -> Result<(FirstCall, SrpcConn), String> {
    let payload = Bytes::from_static(b"first call");
    let start = Instant::now();
    let conn = SrpcConn::open(addr, trust, user, password).await?;
    conn.call(&payload).await?;
    let total = start.elapsed();
    let (service, user, password) = (service.to_owned(), user.to_owned(), password.to_owned());
    let pam = tokio::task::spawn_blocking(move || pam_alone(&service, &user, &password))
        .await
        .map_err(|e| e.to_string())??;
    Ok((FirstCall { total, pam }, conn))
}

/// Resident memory of a process, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status: no VmRSS"))
}

/// Memory only this process holds, in KiB: `Private_Clean` + `Private_Dirty`
/// of `/proc/PID/smaps_rollup` (RSS also counts the binary's and libc's pages,
/// which every worker shares).
pub fn private_kib(pid: u32) -> Result<u64, String> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("/proc/{pid}/smaps_rollup: {e}"))?;
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/smaps_rollup: no {name}"))
    };
    Ok(field("Private_Clean:")? + field("Private_Dirty:")?)
}

/// The processes of `uid` whose command name is `comm`.
pub fn pids_of(uid: u32, comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm_ok = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == comm);
            let uid_ok = std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                    == Some(uid)
            });
            comm_ok && uid_ok
        })
        .collect()
}

/// The one process of `uid` named `comm`, waiting up to 2 s for it.
pub async fn one_pid(uid: u32, comm: &str) -> Result<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match pids_of(uid, comm).as_slice() {
            [pid] => return Ok(*pid),
            [] if Instant::now() < deadline => {}
            found => return Err(format!("{} processes {comm} of uid {uid}", found.len())),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The front's memory per idle authenticated connection: its RSS before and
/// after `n` more connections each with a session attached and a fid walked.
pub async fn front_per_connection(
    front_pid: u32,
    n: usize,
    open: impl AsyncFn() -> Result<SrpcConn, String>,
) -> Result<(f64, Vec<SrpcConn>), String> {
    let before = rss_kib(front_pid)?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(open().await?);
    }
    // Let the front's tasks settle after their last frames.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(front_pid)?;
    #[allow(clippy::cast_precision_loss)]
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    Ok((per, conns))
}

pub fn median_ms(xs: impl Iterator<Item = Duration>) -> f64 {
    median(xs.map(|d| d.as_secs_f64() * 1e3).collect())
}
