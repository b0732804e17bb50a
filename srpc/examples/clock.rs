//! The clock service: answers every call with the current UTC time (RFC 3339, whole
//! seconds) and who is calling, as the kernel reports it on the call connection:
//!
//! ```text
//! 2026-11-23T12:00:00Z caller=alice uid=1001 endpoint=/clock
//! ```
//!
//! (`caller=?` when the user database has no name for the uid.)
//!
//! A service handler: one long-running process, under its own user, not started by
//! srpcd. It listens on a socket that only root and its user may connect to, over
//! which srpcd passes it each call connection with the endpoint path; the caller is
//! the peer of that connection, whoever passed it. It runs until SIGTERM or SIGINT
//! and logs to stderr (`RUST_LOG` sets the level; `info` by default):
//!
//! ```text
//! clock --socket /run/srpc/services/clock.sock
//! ```

// Clock binds its own fd-passing socket: it uses only part of the module.
#[allow(dead_code)]
#[path = "support/handler_main.rs"]
mod handler_main;

use std::process::ExitCode;
use std::time::SystemTime;

use srpc::handler::{Bytes, Call, CallError, Listener};

const SECS_PER_DAY: u64 = 86_400;

pub(crate) fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flag, path] = args.as_slice() else {
        eprintln!("usage: clock --socket PATH");
        return ExitCode::from(2);
    };
    if flag != "--socket" {
        eprintln!("usage: clock --socket PATH");
        return ExitCode::from(2);
    }
    handler_main::log_to_stderr();
    let listener = match Listener::bind_fd_passing(path) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("clock: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(socket = %path, "clock service listening");
    handler_main::run("clock", listener, clock)
}

async fn clock(call: Call) -> Result<Bytes, CallError> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| CallError::failed("the system clock is set before 1970"))?;
    let caller = &call.caller;
    Ok(Bytes::from(format!(
        "{} caller={} uid={} endpoint={}\n",
        rfc3339(now.as_secs()),
        caller.user.as_deref().unwrap_or("?"),
        caller.uid,
        call.endpoint
    )))
}

/// `secs` after the Unix epoch as `YYYY-MM-DDThh:mm:ssZ`.
pub(crate) fn rfc3339(secs: u64) -> String {
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let of_day = secs % SECS_PER_DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch: counting in 400-year eras
/// that start on 1 March, so the leap day is the last day of the era's year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 is March, 11 is February.
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
