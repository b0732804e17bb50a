//! The caller of a connection, from the kernel.

use std::os::fd::AsFd;

use tokio::net::UnixStream;

use super::Caller;

/// Reads the peer's credentials and security context from the connection, and
/// looks up the user name (off the executor: the user database may be remote).
pub(crate) async fn caller_of(stream: &UnixStream) -> Result<Caller, srpc_os::Error> {
    let cred = srpc_os::peer_credentials(stream.as_fd())?;
    let context = srpc_os::peer_security_context(stream.as_fd())?;
    let uid = cred.uid;
    let user = match tokio::task::spawn_blocking(move || srpc_os::user_name(uid)).await {
        Ok(Ok(name)) => name,
        Ok(Err(e)) => {
            // The uid is what matters; a missing name is not worth refusing the call.
            tracing::warn!(uid, error = %e, "cannot look up the caller's user name");
            None
        }
        Err(e) => {
            tracing::warn!(uid, error = %e, "user name lookup did not finish");
            None
        }
    };
    Ok(Caller {
        pid: cred.pid,
        uid,
        gid: cred.gid,
        user,
        context,
    })
}
