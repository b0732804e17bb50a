//! The `admin/stats` endpoint: a few system figures that any user may read, and
//! who is asking (as the kernel reports it on the call connection):
//!
//! ```text
//! load: 0.10 0.05 0.01
//! uptime: 3h12m
//! processes: 143
//! caller: alice (uid 1001)
//! ```
//!
//! `load` is the 1, 5 and 15 minute load averages (`/proc/loadavg`), `uptime` the
//! time since boot (`/proc/uptime`, shown as `[<days>d]<hours>h<minutes>m`),
//! `processes` the number of processes the handler's user can see in `/proc` (all
//! of them unless `/proc` is mounted with `hidepid`), `caller` the calling user's
//! name (`caller: uid 1001` if the user database has none) and uid.
//!
//! A per-user handler: srpcd starts it as the calling user with a clean
//! environment, the socket on fd 3 (`LISTEN_FDS`) and `SRPC_IDLE_TIMEOUT_SECS`, after
//! which it exits when idle. It logs to stderr (`RUST_LOG` sets the level; `info` by
//! default). By hand, listening on a socket of its own:
//!
//! ```text
//! stats --socket /tmp/stats.sock
//! ```

#[path = "support/handler_main.rs"]
mod handler_main;

use std::process::ExitCode;

use srpc::handler::{Bytes, Call, CallError, Caller};

const SECS_PER_MINUTE: u64 = 60;
const SECS_PER_HOUR: u64 = 60 * SECS_PER_MINUTE;
const SECS_PER_DAY: u64 = 24 * SECS_PER_HOUR;

pub(crate) fn main() -> ExitCode {
    handler_main::main_with("stats", "/admin/stats", stats)
}

async fn stats(call: Call) -> Result<Bytes, CallError> {
    // Reading /proc is file I/O: keep it off the async threads.
    let figures = tokio::task::spawn_blocking(Figures::read)
        .await
        .map_err(|e| CallError::failed(format!("reading the figures did not finish: {e}")))??;
    Ok(Bytes::from(figures.report(&call.caller)))
}

struct Figures {
    load: [String; 3],
    uptime_secs: u64,
    processes: usize,
}

impl Figures {
    fn read() -> Result<Figures, CallError> {
        let load = parse_loadavg(&read_proc("/proc/loadavg")?)
            .ok_or_else(|| CallError::failed("/proc/loadavg is not as expected"))?;
        let uptime_secs = parse_uptime(&read_proc("/proc/uptime")?)
            .ok_or_else(|| CallError::failed("/proc/uptime is not as expected"))?;
        let processes = std::fs::read_dir("/proc")
            .map_err(|e| CallError::failed(format!("cannot list /proc: {e}")))?
            // An entry that fails is a process that just ended.
            .flatten()
            .filter(|entry| is_pid(&entry.file_name().to_string_lossy()))
            .count();
        Ok(Figures {
            load,
            uptime_secs,
            processes,
        })
    }

    fn report(&self, caller: &Caller) -> String {
        let [one, five, fifteen] = &self.load;
        let who = match &caller.user {
            Some(name) => format!("{name} (uid {})", caller.uid),
            None => format!("uid {}", caller.uid),
        };
        format!(
            "load: {one} {five} {fifteen}\nuptime: {}\nprocesses: {}\ncaller: {who}\n",
            format_uptime(self.uptime_secs),
            self.processes
        )
    }
}

fn read_proc(path: &str) -> Result<String, CallError> {
    std::fs::read_to_string(path).map_err(|e| CallError::failed(format!("cannot read {path}: {e}")))
}

/// The three load averages from `/proc/loadavg` (`0.10 0.05 0.01 1/143 4242`).
pub(crate) fn parse_loadavg(text: &str) -> Option<[String; 3]> {
    let mut fields = text.split_ascii_whitespace();
    let mut next = || {
        fields
            .next()
            .filter(|f| f.parse::<f64>().is_ok())
            .map(str::to_owned)
    };
    Some([next()?, next()?, next()?])
}

/// Whole seconds since boot from `/proc/uptime` (`12345.67 24000.10`).
pub(crate) fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_ascii_whitespace().next()?;
    let (whole, fraction) = first.split_once('.').unwrap_or((first, "0"));
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    whole.parse().ok()
}

/// `3h12m`, or `2d3h05m` from a day on.
pub(crate) fn format_uptime(secs: u64) -> String {
    let days = secs / SECS_PER_DAY;
    let hours = secs % SECS_PER_DAY / SECS_PER_HOUR;
    let minutes = secs % SECS_PER_HOUR / SECS_PER_MINUTE;
    if days > 0 {
        format!("{days}d{hours}h{minutes:02}m")
    } else {
        format!("{hours}h{minutes:02}m")
    }
}

fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}
