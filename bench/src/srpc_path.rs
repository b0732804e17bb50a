//! The sRPC side: the client library over TLS to srpc-front, then the user's
//! worker, then the per-user echo handler srpcd starts. One session per
//! connection and one fid walked to `/echo`, shared by every task calling on
//! that connection (each call is a pipelined request).

use std::time::Duration;

use bytes::Bytes;
use srpc::client::{Client, DialOptions, Fid, PasswordConversation, Session, Trust};
use srpc_proto::Limits;

use crate::measure::{echoed, Echo};

/// The largest message the bench proposes (its config allows the same): a
/// 1 MiB append plus header and control.
pub const MAX_MESSAGE: u32 = 2 * 1024 * 1024;

pub fn dial_options() -> DialOptions {
    DialOptions::new()
        .limits(Limits {
            max_message: MAX_MESSAGE,
            ..Limits::default()
        })
        .call_timeout(Duration::from_secs(30))
}

/// One authenticated connection with `/echo` walked.
pub struct SrpcConn {
    fid: Fid,
    // Held so the session and connection stay up while `fid` is called.
    _session: Session,
    _client: Client,
}

impl SrpcConn {
    pub async fn open(
        addr: &str,
        trust: Trust,
        user: &str,
        password: &str,
    ) -> Result<Self, String> {
        let client = dial_options()
            .dial(addr, "localhost", trust)
            .await
            .map_err(|e| format!("dial {addr}: {e}"))?;
        let mut conv = PasswordConversation::new(password.to_owned());
        let session = client
            .auth(user, "/", &mut conv)
            .await
            .map_err(|e| format!("{user} login: {e}"))?;
        let fid = session
            .walk("/echo")
            .await
            .map_err(|e| format!("walk /echo: {e}"))?;
        Ok(SrpcConn {
            fid,
            _session: session,
            _client: client,
        })
    }
}

impl Echo for SrpcConn {
    async fn call(&self, payload: &Bytes) -> Result<(), String> {
        let reply = self
            .fid
            .append(payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        echoed(&reply, payload)
    }
}
