//! The sRPC demo (run by `make demo`, which makes the users, the tree and the
//! PAM service first): srpcd on 127.0.0.1, and one TLS connection on which an
//! admin user and an ordinary user log in and make calls. Prints a transcript
//! and fails (exit 1) if anything is not as it should be.
#![allow(clippy::print_stdout)]

#[path = "support/launch.rs"]
mod launch;

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use srpc::client::{Client, Error, PasswordConversation, Session};
use srpc_proto::ErrorCode;

struct Args {
    dir: PathBuf,
    service: String,
    front_user: String,
    admin: String,
    user: String,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut get = |flag: &str| -> Result<String, String> {
        match (it.next(), it.next()) {
            (Some(f), Some(v)) if f == flag => Ok(v),
            _ => Err(format!("expected {flag} VALUE")),
        }
    };
    Ok(Args {
        dir: PathBuf::from(get("--dir")?),
        service: get("--pam-service")?,
        front_user: get("--front-user")?,
        admin: get("--admin")?,
        user: get("--user")?,
    })
}

fn password(args: &Args, user: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(args.dir.join("passwords")).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")).map(str::to_owned))
        .ok_or_else(|| format!("no password for {user}"))
}

fn step(n: &mut u32, what: impl Display) {
    *n += 1;
    println!("[{n:>2}] {what}");
}

fn show(what: impl Display) {
    println!("       {what}");
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

async fn call(s: &Session, path: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    let fid = s.walk(path).await?;
    Ok(fid.append(data.to_vec()).await?.to_vec())
}

/// The uid a process runs as, from /proc (not from anything it says).
fn proc_uid(pid: u64) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
}

async fn whoami(n: &mut u32, s: &Session, user: &str) -> Result<(), String> {
    let reply = call(s, "/whoami", b"").await.map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
    let caller = &v["caller"];
    let handler = &v["handler"];
    let pid = handler["pid"].as_u64().unwrap_or(0);
    let from_proc = proc_uid(pid).unwrap_or_else(|| "?".into());
    step(n, format!("{user} calls /whoami (a per-user handler)"));
    show(format!(
        "the kernel says the caller is uid {} ({})",
        caller["uid"],
        caller["user"].as_str().unwrap_or("?")
    ));
    show(format!(
        "the handler is pid {pid}, running as uid {} — /proc/{pid}/status says Uid {from_proc}",
        handler["uid"]
    ));
    let uid = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw().to_string());
    check(
        uid.as_deref() == Some(from_proc.as_str())
            && handler["uid"].as_u64().map(|u| u.to_string()) == Some(from_proc.clone()),
        "the handler runs as the caller",
    )
}

async fn run(args: &Args) -> Result<(), String> {
    let mut srpcd = launch::start(&args.dir, &args.service, &args.front_user)?;
    println!("sRPC demo");
    println!("  srpcd is listening on {} (TLS 1.3)", srpcd.addr);
    println!("  clients pin its certificate as {}", srpcd.pin);
    println!();
    let result = scenario(args, &srpcd).await;
    srpcd.stop();
    if result.is_err() {
        let log = std::fs::read_to_string(&srpcd.log).unwrap_or_default();
        eprintln!("--- srpcd log ---\n{log}");
    }
    result
}

async fn scenario(args: &Args, srpcd: &launch::Srpcd) -> Result<(), String> {
    let (admin, user) = (&args.admin, &args.user);
    let mut n = 0;
    let client = Client::dial(&srpcd.addr, "localhost", srpcd.trust())
        .await
        .map_err(|e| e.to_string())?;
    step(
        &mut n,
        "one TLS connection opened (server pinned by its key)",
    );

    let a = client
        .auth(
            admin,
            "/",
            &mut PasswordConversation::new(password(args, admin)?),
        )
        .await
        .map_err(|e| format!("{admin} login: {e}"))?;
    step(
        &mut n,
        format!("{admin} logs in with PAM (member of srpcadmin)"),
    );
    let b = client
        .auth(
            user,
            "/",
            &mut PasswordConversation::new(password(args, user)?),
        )
        .await
        .map_err(|e| format!("{user} login: {e}"))?;
    step(
        &mut n,
        format!("{user} logs in with PAM on the same connection"),
    );

    for (who, s) in [(admin, &a), (user, &b)] {
        let msg = format!("hello from {who}");
        let reply = call(s, "/echo", msg.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        step(&mut n, format!("{who} calls /echo \"{msg}\""));
        show(format!("→ \"{}\"", String::from_utf8_lossy(&reply)));
        check(reply == msg.as_bytes(), "echo returns what was sent")?;
    }
    whoami(&mut n, &a, admin).await?;
    whoami(&mut n, &b, user).await?;

    let stats = call(&a, "/admin/stats", b"")
        .await
        .map_err(|e| e.to_string())?;
    step(
        &mut n,
        format!("{admin} calls /admin/stats (mode 0750, group srpcadmin)"),
    );
    for line in String::from_utf8_lossy(&stats).lines() {
        show(format!("→ {line}"));
    }
    match call(&b, "/admin/stats", b"").await {
        Err(e) if e.code() == Some(ErrorCode::PermissionDenied) => {
            step(&mut n, format!("{user} calls /admin/stats"));
            show(format!("→ refused by the kernel: {e}"));
        }
        other => {
            return Err(format!(
                "{user} should be refused /admin/stats, got {other:?}"
            ))
        }
    }

    let clock = call(&a, "/clock", b"").await.map_err(|e| e.to_string())?;
    step(
        &mut n,
        format!("{admin} calls /clock (a service; it reads the caller from the kernel)"),
    );
    show(format!("→ {}", String::from_utf8_lossy(&clock).trim_end()));
    check(
        String::from_utf8_lossy(&clock).contains(&format!("caller={admin}")),
        "the service sees the caller",
    )?;

    match client
        .auth(
            user,
            "/",
            &mut PasswordConversation::new("not the password"),
        )
        .await
    {
        Err(e) if e.code() == Some(ErrorCode::AuthFailed) => {
            step(&mut n, format!("{user} logs in with a wrong password"));
            show(format!("→ refused: {e}"));
        }
        other => return Err(format!("a wrong password should be refused, got {other:?}")),
    }
    cli(&mut n, args, srpcd, admin)?;
    srpcctl(&mut n, args)?;
    println!();
    println!("All checks passed: handlers ran as their callers, the kernel refused {user},");
    println!("a wrong password was refused, and both users shared one connection.");
    Ok(())
}

/// The `srpc` command-line client, as a script would use it (the password on
/// stdin's first line, `--password-fd 0`).
fn cli(n: &mut u32, args: &Args, srpcd: &launch::Srpcd, user: &str) -> Result<(), String> {
    let bin = launch::bin_dir()?.join("srpc");
    let pin = srpcd.pin.to_string();
    let run = |verb: &str, path: &str, input: &str| -> Result<String, String> {
        let mut child = std::process::Command::new(&bin)
            .args(["--pin", &pin, "--user", user, "--password-fd", "0", verb])
            .args([srpcd.addr.as_str(), path])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let pw = password(args, user)?;
            stdin
                .write_all(format!("{pw}\n{input}").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "srpc {verb}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let listing = run("ls", "/", "")?;
    step(
        n,
        format!(
            "the srpc CLI: srpc --pin … --user {user} ls {} /",
            srpcd.addr
        ),
    );
    for line in listing.lines() {
        show(line);
    }
    let echoed = run("call", "/echo", "hello from the CLI")?;
    step(
        n,
        format!("the srpc CLI: echo … | srpc … call {} /echo", srpcd.addr),
    );
    show(format!("→ \"{echoed}\""));
    check(echoed == "hello from the CLI", "the CLI call echoes")
}

/// srpcctl over the demo's private system bus (`DBUS_SYSTEM_BUS_ADDRESS`,
/// set by scripts/demo): what an administrator sees while both users are
/// logged in. As root; then as the ordinary user, who may see the status only.
fn srpcctl(n: &mut u32, args: &Args) -> Result<(), String> {
    if std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_none() {
        step(
            n,
            "srpcctl: skipped (no DBUS_SYSTEM_BUS_ADDRESS; run through make demo)",
        );
        return Ok(());
    }
    let bin = launch::bin_dir()?.join("srpcctl");
    let run = |as_user: Option<&str>, cmd: &[&str]| -> Result<(bool, String), String> {
        let mut c = match as_user {
            None => std::process::Command::new(&bin),
            Some(u) => {
                let account = nix::unistd::User::from_name(u)
                    .ok()
                    .flatten()
                    .ok_or_else(|| format!("no user {u}"))?;
                let mut c = std::process::Command::new("setpriv");
                c.arg(format!("--reuid={}", account.uid))
                    .arg(format!("--regid={}", account.gid))
                    .arg("--init-groups")
                    .arg(&bin);
                c
            }
        };
        let out = c
            .args(cmd)
            .output()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    };
    for cmd in [&["status"][..], &["sessions"], &["workers"]] {
        let (ok, text) = run(None, cmd)?;
        step(n, format!("srpcctl {} (root)", cmd.join(" ")));
        for line in text.lines() {
            show(line);
        }
        check(ok, "srpcctl works for root")?;
        if cmd != ["status"] {
            check(
                text.contains(&args.admin) && text.contains(&args.user),
                "srpcctl shows both users",
            )?;
        }
    }
    let (ok, json) = run(None, &["--json", "sessions"])?;
    step(n, "srpcctl --json sessions (root)");
    for line in json.lines() {
        show(line);
    }
    check(
        ok && json.trim_start().starts_with('['),
        "srpcctl prints JSON",
    )?;
    let (ok, text) = run(Some(&args.user), &["sessions"])?;
    step(
        n,
        format!("srpcctl sessions (as {}, not in srpcadmin)", args.user),
    );
    show(format!("→ {}", text.trim_end()));
    check(
        !ok && text.contains("access denied"),
        "an ordinary user is refused",
    )
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}\nusage: demo --dir DIR --pam-service S --front-user U --admin A --user B");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
