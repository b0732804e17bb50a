//! The worker: runs as one user and serves that user's sessions on one link
//! from the front.

pub mod calls;
pub mod link;
mod names;
pub mod tree;

use std::ffi::OsString;
use std::path::PathBuf;

use crate::users::Account;

/// A connection to a handler unused this long is closed, so the handler can
/// exit when idle.
const HANDLER_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The worker process: checks it runs as the user it serves, makes itself
/// undumpable, adopts its link (fd 3) and serves it until the front closes it
/// or SIGTERM.
pub fn main(args: Vec<OsString>) -> Result<(), Box<dyn std::error::Error>> {
    let mut tree_root = None;
    let mut canonical_root: Option<PathBuf> = None;
    let mut user = None;
    let mut call_timeout = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--tree-root") => tree_root = args.next().map(PathBuf::from),
            Some("--canonical-root") => canonical_root = args.next().map(PathBuf::from),
            Some("--user") => user = args.next().and_then(|u| u.into_string().ok()),
            Some("--call-timeout-secs") => call_timeout = Some(seconds(args.next())?),
            _ => return Err(format!("unknown argument {arg:?} (started by srpcd only)").into()),
        }
    }
    let (Some(tree_root), Some(user), Some(call_timeout)) = (tree_root, user, call_timeout) else {
        return Err(
            "usage: srpc-worker --tree-root DIR [--canonical-root DIR] --user NAME \
                    --call-timeout-secs N (started by srpcd only)"
                .into(),
        );
    };
    // Memory of a worker holds the user's data: no core dumps, no ptrace by
    // other processes of the same uid.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    rustix::thread::set_no_new_privs(true)?;
    verify_identity(&user)?;
    let mut fds = srpc_os::listen_fds()?;
    let Some((fd, _)) = fds.pop() else {
        return Err("no link passed (LISTEN_FDS)".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let std_stream = std::os::unix::net::UnixStream::from(fd);
        std_stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(std_stream)?;
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tree = tree::Tree::new(tree_root, user);
        if let Some(root) = canonical_root {
            // Without it, stat describes the clone's nodes (logged).
            tree = match tree.canonical(&root) {
                Ok(tree) => tree,
                Err((tree, e)) => {
                    eprintln!(
                        "canonical tree {}: {e}: stat describes the clone",
                        root.display()
                    );
                    tree
                }
            };
        }
        let calls = calls::Calls::new(HANDLER_IDLE, call_timeout);
        let sweeper = std::sync::Arc::clone(&calls);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HANDLER_IDLE / 2);
            loop {
                tick.tick().await;
                sweeper.close_idle();
            }
        });
        tokio::select! {
            // The front enforces each client's negotiated limits; internally
            // anything up to the ceiling is accepted (one rule for every link).
            served = link::serve(stream, tree, srpc_proto::INTERNAL_LINK_LIMITS, calls) => served?,
            _ = sigterm.recv() => {}
        }
        Ok(())
    })
}

/// `--call-timeout-secs`: whole seconds in the range srpcd.toml allows.
fn seconds(arg: Option<OsString>) -> Result<std::time::Duration, String> {
    let range = crate::config::CALL_TIMEOUT_SECS;
    arg.and_then(|a| a.into_string().ok())
        .and_then(|a| a.parse::<u32>().ok())
        .filter(|s| range.contains(s))
        .map(|s| std::time::Duration::from_secs(u64::from(s)))
        .ok_or_else(|| {
            format!(
                "--call-timeout-secs needs whole seconds from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// Fails unless every uid, gid and the group list are the user's: the spawn
/// set them, and this checks the kernel agrees before any request is served.
fn verify_identity(user: &str) -> Result<(), Box<dyn std::error::Error>> {
    let account = Account::lookup(user)?;
    let uids = nix::unistd::getresuid()?;
    let gids = nix::unistd::getresgid()?;
    let ids_ok = [uids.real, uids.effective, uids.saved]
        .iter()
        .all(|u| u.as_raw() == account.uid)
        && [gids.real, gids.effective, gids.saved]
            .iter()
            .all(|g| g.as_raw() == account.gid);
    let mut groups: Vec<u32> = nix::unistd::getgroups()?
        .iter()
        .map(|g| g.as_raw())
        .collect();
    let mut expected = account.groups.clone();
    groups.sort_unstable();
    groups.dedup();
    expected.sort_unstable();
    expected.dedup();
    if !ids_ok || groups != expected {
        return Err(format!(
            "refusing to serve {user}: running as uids {uids:?} gids {gids:?} groups {groups:?}, \
             expected uid {} gid {} groups {expected:?}",
            account.uid, account.gid
        )
        .into());
    }
    Ok(())
}
