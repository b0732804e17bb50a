//! srpcctl: see and steer a running srpcd over its D-Bus interface
//! `org.srpc.Srpcd1`. One subcommand per method; tables for people, `--json`
//! for scripts; every failure is one line and a documented exit status
//! (srpcctl(8)), never a D-Bus trace.
#![forbid(unsafe_code)]

mod client;
mod table;

use srpc_admin as types;

use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{CommandFactory, Parser, Subcommand};
use serde::Serialize;

use client::Failure;

/// Administer a running srpcd (over D-Bus, org.srpc.Srpcd1 on the system bus).
#[derive(Debug, Parser)]
#[command(name = "srpcctl", version, after_help = EXIT_STATUS)]
struct Cli {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

const EXIT_STATUS: &str = "\
Exit status: 0 done; 1 srpcd refused (no such session, reload refused…);
2 usage error; 3 srpcd is not running (or no system bus); 4 access denied.
status is open to every local user; the rest needs root or group srpcadmin.";

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Version, uptime, SELinux mode, listen address, TLS pin and counts.
    Status,
    /// The sessions attached now.
    Sessions,
    /// The users' workers.
    Workers,
    /// End a session: its fids go and it cannot attach again.
    KillSession {
        /// The session id (from `srpcctl sessions`).
        id: u64,
    },
    /// End all sessions of a user, then the user's worker and handlers.
    StopWorker {
        /// The user.
        user: String,
    },
    /// Reread the configuration and TLS files (as SIGHUP); sessions stay.
    Reload,
    /// Set what srpcd logs (RUST_LOG syntax: `debug`, `info,srpcd::audit=debug`).
    LogLevel {
        /// The filter directives.
        directives: String,
    },
    /// What a login of this user would meet, and why.
    ExplainUser {
        /// The user.
        user: String,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "srpcctl",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("srpcctl: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("srpcctl: {}", failure.message());
            ExitCode::from(failure.code())
        }
    }
}

async fn run(cli: &Cli) -> Result<String, Failure> {
    let proxy = client::connect().await?;
    let fail = |e: zbus::Error| client::classify(&e);
    let json = cli.json;
    match &cli.command {
        Cmd::Status => Ok(show_status(&proxy.status().await.map_err(fail)?, json)),
        Cmd::Sessions => Ok(show_sessions(
            &proxy.list_sessions().await.map_err(fail)?,
            json,
        )),
        Cmd::Workers => Ok(show_workers(
            &proxy.list_workers().await.map_err(fail)?,
            json,
        )),
        Cmd::KillSession { id } => Ok(done(proxy.kill_session(*id).await.map_err(fail)?, json)),
        Cmd::StopWorker { user } => Ok(done(proxy.stop_worker(user).await.map_err(fail)?, json)),
        Cmd::Reload => Ok(done(proxy.reload().await.map_err(fail)?, json)),
        Cmd::LogLevel { directives } => Ok(done(
            proxy.set_log_level(directives).await.map_err(fail)?,
            json,
        )),
        Cmd::ExplainUser { user } => Ok(show_explanation(
            &proxy.explain_user(user).await.map_err(fail)?,
            json,
        )),
        Cmd::Completions { .. } => Ok(String::new()),
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value)
        .map_or_else(|e| format!("{{\"error\":\"{e}\"}}\n"), |s| s + "\n")
}

fn done(summary: String, json: bool) -> String {
    if json {
        to_json(&serde_json::json!({ "result": summary }))
    } else {
        summary + "\n"
    }
}

fn age(started_unix: u64) -> String {
    if started_unix == 0 {
        return "-".to_owned();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    table::duration(now.saturating_sub(started_unix))
}

fn show_status(s: &types::Status, json: bool) -> String {
    if json {
        return to_json(s);
    }
    table::fields(&[
        ("version", s.version.clone()),
        ("interface", s.interface.clone()),
        ("uptime", table::duration(s.uptime_secs)),
        ("selinux", s.selinux.clone()),
        ("listen", s.listen.clone()),
        ("pin", s.pin.clone()),
        ("sessions", s.sessions.to_string()),
        ("workers", s.workers.to_string()),
        ("logins in progress", s.logins_in_progress.to_string()),
    ])
}

fn show_sessions(sessions: &[types::Session], json: bool) -> String {
    if json {
        return to_json(&sessions);
    }
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.user.clone(),
                s.remote.clone(),
                s.aname.clone(),
                age(s.started_unix),
            ]
        })
        .collect();
    table::render(&["ID", "USER", "REMOTE", "ATTACHED AT", "AGE"], &rows)
}

fn show_workers(workers: &[types::Worker], json: bool) -> String {
    if json {
        return to_json(&workers);
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.user.clone(),
                w.uid.to_string(),
                if w.pid == 0 {
                    "-".to_owned()
                } else {
                    w.pid.to_string()
                },
                w.state.clone(),
                w.sessions.to_string(),
                age(w.started_unix),
                if w.sessions > 0 {
                    "-".to_owned()
                } else {
                    table::duration(w.idle_secs)
                },
                dash(&w.context),
            ]
        })
        .collect();
    table::render(
        &[
            "USER", "UID", "PID", "STATE", "SESSIONS", "AGE", "IDLE", "CONTEXT",
        ],
        &rows,
    )
}

fn show_explanation(e: &types::Explanation, json: bool) -> String {
    if json {
        return to_json(e);
    }
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut pairs = vec![("user", e.user.clone()), ("verdict", e.verdict.clone())];
    if e.exists {
        pairs.extend([
            ("uid", e.uid.to_string()),
            ("gid", e.gid.to_string()),
            ("groups", e.groups.join(",")),
            ("admin", e.admin.clone()),
        ]);
    }
    pairs.extend([
        ("lockout", dash(&e.lockout)),
        ("pam service", e.pam_service.clone()),
        ("pam file", e.pam_file.clone()),
        ("seuser", dash(&e.seuser)),
        ("role", dash(&e.role)),
        ("level", dash(&e.level)),
        ("context", dash(&e.context)),
        ("selinux", e.selinux.clone()),
    ]);
    table::fields(&pairs)
}
