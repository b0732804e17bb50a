//! A user's session and the fids it walks to.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use srpc_proto::{decode_listing, validate_name, Kind, Message, Qid, QidType, Stat};

use super::call::{unexpected, Conn, FidSlot};
use super::error::Error;

/// A handle to a node of a user's tree, bound on the server (a protocol fid).
///
/// Calls on one `Fid` may run concurrently; each is a pipelined request. A dropped
/// `Fid` is clunked in the background; [`Fid::clunk`] does it and reports errors.
///
/// ```no_run
/// # async fn demo(session: srpc::client::Session) -> Result<(), srpc::client::Error> {
/// use std::time::Duration;
///
/// let echo = session.walk("/services/echo").await?.with_timeout(Duration::from_secs(5));
/// let reply = echo.append(&b"hello"[..]).await?;
/// assert_eq!(&reply[..], b"hello");
/// echo.clunk().await?;
/// # Ok(()) }
/// ```
pub struct Fid {
    // Dropped first: a bound slot clunks itself while the connection is still open.
    slot: FidSlot,
    conn: Arc<Conn>,
    qid: Qid,
    timeout: Option<Duration>,
}

impl fmt::Debug for Fid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fid")
            .field("fid", &self.slot.fid())
            .field("qid", &self.qid)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Fid {
    pub(crate) fn new(mut slot: FidSlot, conn: Arc<Conn>, qid: Qid) -> Fid {
        slot.bind();
        let timeout = conn.call_timeout;
        Fid {
            slot,
            conn,
            qid,
            timeout,
        }
    }

    /// The fid number on the wire.
    ///
    /// ```no_run
    /// # fn demo(fid: &srpc::client::Fid) {
    /// println!("fid {}", fid.id());
    /// # }
    /// ```
    pub fn id(&self) -> u32 {
        self.slot.fid()
    }

    /// The server's identity for the node (its kind, path and version).
    ///
    /// ```no_run
    /// # fn demo(fid: &srpc::client::Fid) {
    /// use srpc::proto::QidType;
    ///
    /// if fid.qid().kind == QidType::Endpoint {
    ///     println!("callable");
    /// }
    /// # }
    /// ```
    pub fn qid(&self) -> Qid {
        self.qid
    }

    /// This handle with another per-call timeout (`None`: wait as long as it
    /// takes). Fids walked from it inherit it. A call that times out is flushed
    /// and fails with [`Error::Timeout`].
    ///
    /// ```no_run
    /// # async fn demo(fid: srpc::client::Fid) {
    /// use std::time::Duration;
    ///
    /// let patient = fid.with_timeout(None);
    /// let quick = patient.with_timeout(Duration::from_millis(200));
    /// # let _ = quick;
    /// # }
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Fid {
        self.timeout = timeout.into();
        self
    }

    /// Walks a relative `/`-separated path (`"a/b"`) to a new fid; `""` clones
    /// this one. Each element must be a valid name: no `.`, `..` or empty elements.
    ///
    /// ```no_run
    /// # async fn demo(dir: &srpc::client::Fid) -> Result<(), srpc::client::Error> {
    /// let endpoint = dir.walk("reports/daily").await?;
    /// let same_dir = dir.walk("").await?;
    /// # let _ = (endpoint, same_dir);
    /// # Ok(()) }
    /// ```
    pub async fn walk(&self, path: &str) -> Result<Fid, Error> {
        let names = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').map(str::to_owned).collect()
        };
        self.walk_owned(names).await
    }

    /// Walks through `names`, one path element each, to a new fid.
    ///
    /// ```no_run
    /// # async fn demo(dir: &srpc::client::Fid) -> Result<(), srpc::client::Error> {
    /// let endpoint = dir.walk_names(&["reports", "daily"]).await?;
    /// # let _ = endpoint;
    /// # Ok(()) }
    /// ```
    pub async fn walk_names(&self, names: &[&str]) -> Result<Fid, Error> {
        self.walk_owned(names.iter().map(|&n| n.to_owned()).collect())
            .await
    }

    async fn walk_owned(&self, names: Vec<String>) -> Result<Fid, Error> {
        let limits = self.conn.limits();
        for name in &names {
            validate_name(name, limits.max_name).map_err(|error| Error::InvalidName {
                name: name.clone(),
                error,
            })?;
        }
        if names.len() > limits.max_walk as usize {
            return Err(Error::LimitExceeded(format!(
                "a walk of {} names exceeds the negotiated max_walk of {}",
                names.len(),
                limits.max_walk
            )));
        }
        let slot = FidSlot::new(&self.conn.shared)?;
        let msg = Message::Twalk {
            fid: self.id(),
            newfid: slot.fid(),
            names: names.clone(),
        };
        let (reply, slot) = self.conn.exchange(msg, slot, self.timeout).await?;
        let qids = match reply {
            Message::Rwalk { qids } => qids,
            other => return Err(unexpected(other, Kind::Twalk)),
        };
        if qids.len() > names.len() {
            return Err(Error::Protocol(format!(
                "the server answered a walk of {} names with {} qids",
                names.len(),
                qids.len()
            )));
        }
        if qids.len() < names.len() {
            // Not bound: the slot is freed when dropped.
            return Err(Error::WalkIncomplete {
                walked: qids.len(),
                requested: names.len(),
                stopped_at: names[qids.len()].clone(),
            });
        }
        let qid = qids.last().copied().unwrap_or(self.qid);
        Ok(Fid::new(slot, Arc::clone(&self.conn), qid).with_timeout(self.timeout))
    }

    /// Describes the node, as the server sees it with the user's rights.
    ///
    /// ```no_run
    /// # async fn demo(fid: &srpc::client::Fid) -> Result<(), srpc::client::Error> {
    /// let stat = fid.stat().await?;
    /// println!("{} {:o} {}:{}", stat.name, stat.mode, stat.owner, stat.group);
    /// # Ok(()) }
    /// ```
    pub async fn stat(&self) -> Result<Stat, Error> {
        let msg = Message::Tstat { fid: self.id() };
        match self.conn.exchange(msg, (), self.timeout).await?.0 {
            Message::Rstat { stat } => Ok(stat),
            other => Err(unexpected(other, Kind::Tstat)),
        }
    }

    /// Lists the directory: the stat of each entry the user may see, sorted by
    /// name. Entries the user cannot stat are left out by the server.
    ///
    /// Fails with [`Error::NotDirectory`] without sending anything when this fid
    /// is not a directory (on an endpoint, the empty append that asks for a
    /// listing would be a call), and with [`Error::Server`] when the kernel
    /// refuses the user read access to the directory (`permission_denied`) or the
    /// listing would not fit in `max_message` (`limit_exceeded`).
    ///
    /// ```no_run
    /// # async fn demo(session: &srpc::client::Session) -> Result<(), srpc::client::Error> {
    /// use srpc::proto::QidType;
    ///
    /// let services = session.walk("/services").await?;
    /// for entry in services.list().await? {
    ///     let kind = if entry.qid.kind == QidType::Dir { "dir" } else { "endpoint" };
    ///     println!("{kind} {} {:o} {}", entry.name, entry.mode, entry.owner);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self) -> Result<Vec<Stat>, Error> {
        if self.qid.kind != QidType::Dir {
            return Err(Error::NotDirectory {
                kind: self.qid.kind,
            });
        }
        let data = self.append(Bytes::new()).await?;
        decode_listing(&data).map_err(|e| {
            Error::Protocol(format!(
                "the server sent a malformed directory listing: {e}"
            ))
        })
    }

    /// Calls the endpoint: sends `data` and returns the handler's reply bytes.
    /// Binary-safe; the data is sent as it is.
    ///
    /// ```no_run
    /// # async fn demo(endpoint: &srpc::client::Fid) -> Result<(), srpc::client::Error> {
    /// let reply = endpoint.append(br#"{"op":"ping"}"#.to_vec()).await?;
    /// println!("{}", String::from_utf8_lossy(&reply));
    /// # Ok(()) }
    /// ```
    pub async fn append(&self, data: impl Into<Bytes>) -> Result<Bytes, Error> {
        let msg = Message::Tappend {
            fid: self.id(),
            data: data.into(),
        };
        match self.conn.exchange(msg, (), self.timeout).await?.0 {
            Message::Rappend { data } => Ok(data),
            other => Err(unexpected(other, Kind::Tappend)),
        }
    }

    /// Releases the fid on the server and waits for the answer. The fid number is
    /// free again afterwards, even when the server reports an error.
    ///
    /// ```no_run
    /// # async fn demo(fid: srpc::client::Fid) -> Result<(), srpc::client::Error> {
    /// fid.clunk().await?;
    /// # Ok(()) }
    /// ```
    pub async fn clunk(self) -> Result<(), Error> {
        let Fid {
            slot,
            conn,
            timeout,
            ..
        } = self;
        let msg = Message::Tclunk { fid: slot.fid() };
        let (reply, mut slot) = conn.exchange(msg, slot, timeout).await?;
        // The server forgets a clunked fid whatever it answers.
        slot.unbind();
        drop(slot);
        match reply {
            Message::Rclunk => Ok(()),
            other => Err(unexpected(other, Kind::Tclunk)),
        }
    }
}

/// One authenticated user's session: the root fid of the tree attached at the
/// session's path, from [`super::Client::auth`]. Several sessions, of the same or
/// different users, can share one connection; their fids are independent.
///
/// Dropping the session clunks its root in the background, which ends the session
/// on the server once no fid walked from it is left.
///
/// ```no_run
/// # async fn demo(client: srpc::client::Client) -> Result<(), srpc::client::Error> {
/// use srpc::client::PasswordConversation;
///
/// let mut conv = PasswordConversation::new("s3cret");
/// let session = client.auth("alice", "/", &mut conv).await?;
/// println!("{} attached at {}", session.user(), session.aname());
/// let echo = session.walk("echo").await?;
/// println!("{:?}", echo.append(&b"hi"[..]).await?);
/// session.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Session {
    root: Fid,
    user: String,
    aname: String,
}

impl Session {
    pub(crate) fn new(root: Fid, user: String, aname: String) -> Session {
        Session { root, user, aname }
    }

    /// The authenticated user's name.
    ///
    /// ```no_run
    /// # fn demo(session: &srpc::client::Session) {
    /// assert_eq!(session.user(), "alice");
    /// # }
    /// ```
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The path the session is attached at.
    ///
    /// ```no_run
    /// # fn demo(session: &srpc::client::Session) {
    /// assert_eq!(session.aname(), "/");
    /// # }
    /// ```
    pub fn aname(&self) -> &str {
        &self.aname
    }

    /// The fid of the session's root (the attach point).
    ///
    /// ```no_run
    /// # async fn demo(session: &srpc::client::Session) -> Result<(), srpc::client::Error> {
    /// let stat = session.root().stat().await?;
    /// assert_eq!(stat.name, "/");
    /// # Ok(()) }
    /// ```
    pub fn root(&self) -> &Fid {
        &self.root
    }

    /// Walks from the session's root. The path is `/`-separated; a leading `/`
    /// (the root itself) is optional, so `"/a/b"` and `"a/b"` are the same node
    /// and `"/"` clones the root.
    ///
    /// ```no_run
    /// # async fn demo(session: &srpc::client::Session) -> Result<(), srpc::client::Error> {
    /// let a = session.walk("/services/echo").await?;
    /// let b = session.walk("services/echo").await?;
    /// assert_eq!(a.qid(), b.qid());
    /// # Ok(()) }
    /// ```
    pub async fn walk(&self, path: &str) -> Result<Fid, Error> {
        self.root.walk(path.strip_prefix('/').unwrap_or(path)).await
    }

    /// Ends the session: clunks the root fid and waits for the answer.
    ///
    /// ```no_run
    /// # async fn demo(session: srpc::client::Session) -> Result<(), srpc::client::Error> {
    /// session.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<(), Error> {
        self.root.clunk().await
    }
}
