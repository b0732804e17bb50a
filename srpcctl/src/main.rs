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
2 usage error; 3 srpcd is not running (or no system bus); 4 access denied;
5 check-tree found problems (nodes the clone skips or refuses).
status is open to every local user; the rest needs root or group srpcadmin.";

/// `check-tree`'s exit status when the tree has a problem.
const TREE_PROBLEMS: u8 = 5;

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Version, uptime, SELinux mode, listen address, TLS pin and counts.
    Status,
    /// The sessions attached now.
    Sessions,
    /// The users' workers, each with the handlers it has running.
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
    /// The canonical tree as the clone sees it, and the problems it skips or refuses.
    CheckTree {
        /// A directory of the tree to check from (`/sub`), as an attach path
        /// names it.
        #[arg(default_value = "/")]
        path: String,
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
        Ok(Shown { text, problems }) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            if problems == 0 {
                return ExitCode::SUCCESS;
            }
            eprintln!("srpcctl: the tree has {problems} problem(s): the clone skips or refuses those nodes");
            ExitCode::from(TREE_PROBLEMS)
        }
        Err(failure) => {
            eprintln!("srpcctl: {}", failure.message());
            ExitCode::from(failure.code())
        }
    }
}

/// What a command prints, and how many tree problems it found.
struct Shown {
    text: String,
    problems: usize,
}

impl From<String> for Shown {
    fn from(text: String) -> Shown {
        Shown { text, problems: 0 }
    }
}

async fn run(cli: &Cli) -> Result<Shown, Failure> {
    let proxy = client::connect().await?;
    let fail = |e: zbus::Error| client::classify(&e);
    let json = cli.json;
    if let Cmd::CheckTree { path } = &cli.command {
        let nodes = proxy.check_tree(path).await.map_err(fail)?;
        return Ok(Shown {
            problems: nodes.iter().filter(|n| n.verdict != "cloned").count(),
            text: show_tree(&nodes, json),
        });
    }
    if let Cmd::Workers = cli.command {
        let workers = proxy.list_workers().await.map_err(fail)?;
        let handlers = proxy.list_handlers().await.map_err(fail)?;
        return Ok(show_workers(&workers, &handlers, json).into());
    }
    run_simple(&proxy, cli).await.map(Shown::from)
}

async fn run_simple(proxy: &client::Srpcd1Proxy<'_>, cli: &Cli) -> Result<String, Failure> {
    let fail = |e: zbus::Error| client::classify(&e);
    let json = cli.json;
    match &cli.command {
        Cmd::Status => Ok(show_status(&proxy.status().await.map_err(fail)?, json)),
        Cmd::Sessions => Ok(show_sessions(
            &proxy.list_sessions().await.map_err(fail)?,
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
        Cmd::Completions { .. } | Cmd::Workers | Cmd::CheckTree { .. } => Ok(String::new()),
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
                s.fids.to_string(),
                s.calls.to_string(),
            ]
        })
        .collect();
    table::render(
        &[
            "ID",
            "USER",
            "REMOTE",
            "ATTACHED AT",
            "AGE",
            "FIDS",
            "CALLS",
        ],
        &rows,
    )
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// Workers, each followed by its handlers (a handler whose worker is not in
/// the listing, which a race between the two calls can give, comes last).
fn show_workers(workers: &[types::Worker], handlers: &[types::Handler], json: bool) -> String {
    let of = |user: &str| -> Vec<&types::Handler> {
        handlers.iter().filter(|h| h.user == user).collect()
    };
    let orphans = handlers
        .iter()
        .filter(|h| !workers.iter().any(|w| w.user == h.user));
    if json {
        let mut out: Vec<serde_json::Value> = workers
            .iter()
            .map(|w| {
                let mut v = serde_json::to_value(w).unwrap_or_default();
                if let Some(map) = v.as_object_mut() {
                    map.insert(
                        "handlers".to_owned(),
                        serde_json::to_value(of(&w.user)).unwrap_or_default(),
                    );
                }
                v
            })
            .collect();
        out.extend(orphans.map(|h| serde_json::json!({ "user": h.user, "handlers": [h] })));
        return to_json(&out);
    }
    let handler_row = |h: &types::Handler| {
        vec![
            format!("  {}", h.endpoint),
            "-".to_owned(),
            h.pid.to_string(),
            "handler".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            age(h.started_unix),
            "-".to_owned(),
            dash(&h.context),
        ]
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for w in workers {
        rows.push(vec![
            w.user.clone(),
            w.uid.to_string(),
            if w.pid == 0 {
                "-".to_owned()
            } else {
                w.pid.to_string()
            },
            w.state.clone(),
            w.sessions.to_string(),
            w.calls.to_string(),
            age(w.started_unix),
            if w.sessions > 0 {
                "-".to_owned()
            } else {
                table::duration(w.idle_secs)
            },
            dash(&w.context),
        ]);
        rows.extend(of(&w.user).into_iter().map(handler_row));
    }
    for h in orphans {
        let mut row = handler_row(h);
        row[0] = format!("{} {}", h.user, h.endpoint);
        rows.push(row);
    }
    table::render(
        &[
            "USER", "UID", "PID", "STATE", "SESSIONS", "CALLS", "AGE", "IDLE", "CONTEXT",
        ],
        &rows,
    )
}

fn show_tree(nodes: &[types::TreeNode], json: bool) -> String {
    if json {
        return to_json(&nodes);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.path.clone(),
                n.kind.clone(),
                format!("{:04o}", n.mode),
                dash(&n.owner),
                dash(&n.group),
                dash(&n.label),
                if n.verdict == "cloned" {
                    if n.service.is_empty() {
                        "ok".to_owned()
                    } else {
                        format!("ok: service {}", n.service)
                    }
                } else {
                    format!("{}: {}", n.verdict, n.problem)
                },
            ]
        })
        .collect();
    table::render(
        &["PATH", "KIND", "MODE", "OWNER", "GROUP", "LABEL", "VERDICT"],
        &rows,
    )
}

fn show_explanation(e: &types::Explanation, json: bool) -> String {
    if json {
        return to_json(e);
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{show_tree, show_workers, types};

    fn worker(user: &str) -> types::Worker {
        types::Worker {
            user: user.to_owned(),
            uid: 1000,
            pid: 41,
            state: "running".to_owned(),
            sessions: 1,
            calls: 3,
            started_unix: 0,
            idle_secs: 0,
            context: String::new(),
            level: String::new(),
        }
    }

    fn handler(user: &str, endpoint: &str, pid: u32) -> types::Handler {
        types::Handler {
            user: user.to_owned(),
            endpoint: endpoint.to_owned(),
            pid,
            started_unix: 0,
            starts: 1,
            context: String::new(),
            level: String::new(),
        }
    }

    #[test]
    fn handlers_are_listed_under_their_worker_and_strays_last() {
        let workers = [worker("alice"), worker("bob")];
        let handlers = [
            handler("bob", "/echo", 52),
            handler("carol", "/time", 60),
            handler("alice", "/echo", 51),
        ];
        let table = show_workers(&workers, &handlers, false);
        let first: Vec<&str> = table
            .lines()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            first,
            ["USER", "alice", "/echo", "bob", "/echo", "carol"],
            "{table}"
        );
        assert!(
            table.lines().nth(2).unwrap().starts_with("  /echo"),
            "{table}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&show_workers(&workers, &handlers, true)).unwrap();
        assert_eq!(json[0]["handlers"][0]["pid"], 51);
        assert_eq!(json[1]["handlers"][0]["pid"], 52);
        assert_eq!(json[2]["user"], "carol");
        assert_eq!(json[2]["handlers"][0]["endpoint"], "/time");
    }

    #[test]
    fn tree_rows_say_ok_or_why_not() {
        let node = |path: &str, kind: &str, verdict: &str, problem: &str| types::TreeNode {
            path: path.to_owned(),
            kind: kind.to_owned(),
            verdict: verdict.to_owned(),
            problem: problem.to_owned(),
            mode: 0o644,
            uid: 0,
            owner: "root".to_owned(),
            gid: 0,
            group: "root".to_owned(),
            label: String::new(),
            service: String::new(),
        };
        let mut time = node("/time", "service", "cloned", "");
        time.service = "/run/t.sock".to_owned();
        let table = show_tree(
            &[
                time,
                node("/l", "symlink", "skipped", "a symlink: never cloned"),
            ],
            false,
        );
        assert_eq!(
            table,
            "PATH   KIND     MODE  OWNER  GROUP  LABEL  VERDICT\n\
             /time  service  0644  root   root   -      ok: service /run/t.sock\n\
             /l     symlink  0644  root   root   -      skipped: a symlink: never cloned\n"
        );
    }
}
