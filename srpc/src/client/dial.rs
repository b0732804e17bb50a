//! Dialing: TCP connect, TLS handshake and the version exchange.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use srpc_proto::{encode, ErrorCode, Frame, Limits, Message, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_rustls::TlsConnector;

use super::call::{unexpected, Conn};
use super::error::Error;
use super::frames::{FrameReader, ReadError};
use super::streams;
use super::tls;
use super::trust::Trust;

/// The per-call timeout unless configured otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The dial timeout unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sequence number of the version exchange, before the multiplexer starts.
const VERSION_SEQ: u64 = 0;

/// How to dial: the limits to propose, timeouts and TLS versions.
///
/// ```no_run
/// # async fn demo() -> Result<(), srpc::client::Error> {
/// use std::time::Duration;
/// use srpc::client::{DialOptions, Trust};
/// use srpc::proto::Limits;
///
/// let pin = "sha256:3f0c…".parse().map_err(srpc::client::Error::from)?;
/// let client = DialOptions::new()
///     .limits(Limits { max_pending: 64, ..Limits::default() })
///     .call_timeout(Duration::from_secs(5))
///     .connect_timeout(Duration::from_secs(3))
///     .dial("srpc.example.org:7001", "srpc.example.org", Trust::Pin(pin))
///     .await?;
/// # let _ = client;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DialOptions {
    limits: Limits,
    call_timeout: Option<Duration>,
    connect_timeout: Duration,
    allow_tls12: bool,
}

impl Default for DialOptions {
    fn default() -> Self {
        DialOptions {
            limits: Limits::default(),
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            allow_tls12: false,
        }
    }
}

impl DialOptions {
    /// The defaults: [`Limits::default`], [`DEFAULT_CALL_TIMEOUT`],
    /// [`DEFAULT_CONNECT_TIMEOUT`], TLS 1.3 only.
    ///
    /// ```
    /// let options = srpc::client::DialOptions::new();
    /// # let _ = options;
    /// ```
    pub fn new() -> DialOptions {
        DialOptions::default()
    }

    /// The limits to propose; the server may lower each of them.
    ///
    /// ```
    /// use srpc::client::DialOptions;
    /// use srpc::proto::Limits;
    ///
    /// let options = DialOptions::new().limits(Limits { max_fids: 64, ..Limits::default() });
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> DialOptions {
        self.limits = limits;
        self
    }

    /// The default per-call timeout (`None`: no timeout). [`super::Fid::with_timeout`]
    /// overrides it for one handle.
    ///
    /// ```
    /// use std::time::Duration;
    /// use srpc::client::DialOptions;
    ///
    /// let options = DialOptions::new().call_timeout(Duration::from_secs(2));
    /// let unbounded = DialOptions::new().call_timeout(None);
    /// # let _ = (options, unbounded);
    /// ```
    #[must_use]
    pub fn call_timeout(mut self, timeout: impl Into<Option<Duration>>) -> DialOptions {
        self.call_timeout = timeout.into();
        self
    }

    /// The time allowed for the TCP connect, TLS handshake and version exchange
    /// together.
    ///
    /// ```
    /// use std::time::Duration;
    /// use srpc::client::DialOptions;
    ///
    /// let options = DialOptions::new().connect_timeout(Duration::from_secs(1));
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> DialOptions {
        self.connect_timeout = timeout;
        self
    }

    /// Also offer TLS 1.2 (off by default: TLS 1.3 only).
    ///
    /// ```
    /// let options = srpc::client::DialOptions::new().allow_tls12(true);
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn allow_tls12(mut self, allow: bool) -> DialOptions {
        self.allow_tls12 = allow;
        self
    }

    /// Connects to `addr`, authenticates the server as `server_name` by `trust`,
    /// and negotiates the protocol version and limits.
    ///
    /// ```no_run
    /// # async fn demo(trust: srpc::client::Trust) -> Result<(), srpc::client::Error> {
    /// let client = srpc::client::DialOptions::new()
    ///     .dial("127.0.0.1:7001", "localhost", trust)
    ///     .await?;
    /// println!("negotiated {:?}", client.limits());
    /// # Ok(()) }
    /// ```
    pub async fn dial<A>(&self, addr: A, server_name: &str, trust: Trust) -> Result<Client, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        if !self.limits.is_sane() {
            return Err(Error::InvalidOptions(format!(
                "proposed limits {:?} are outside the protocol's bounds",
                self.limits
            )));
        }
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| Error::InvalidServerName(server_name.to_owned()))?;
        let connector = TlsConnector::from(Arc::new(tls::client_config(&trust, self.allow_tls12)?));
        let setup = async {
            let tcp = TcpStream::connect(&addr)
                .await
                .map_err(|source| Error::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            // Requests are small and latency-bound; the writer batches them itself.
            tcp.set_nodelay(true)?;
            let mut stream = connector
                .connect(name, tcp)
                .await
                .map_err(tls::handshake_error)?;
            let (limits, frames) = exchange_version(&mut stream, self.limits).await?;
            Ok::<_, Error>((stream, limits, frames))
        };
        let (stream, limits, frames) = tokio::time::timeout(self.connect_timeout, setup)
            .await
            .map_err(|_| Error::DialTimeout {
            after: self.connect_timeout,
        })??;
        Ok(Client {
            conn: Arc::new(Conn {
                shared: streams::start(stream, frames, limits),
                call_timeout: self.call_timeout,
            }),
        })
    }
}

/// Sends `Tversion` with the proposal and reads the server's answer: the limits in
/// force, and the reader holding whatever followed the answer.
async fn exchange_version<S>(
    stream: &mut S,
    proposal: Limits,
) -> Result<(Limits, FrameReader), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = Frame::new(
        VERSION_SEQ,
        Message::Tversion {
            version: PROTOCOL_VERSION.to_owned(),
            limits: proposal,
        },
    );
    stream.write_all(&encode(&request)).await?;
    stream.flush().await?;
    let mut frames = FrameReader::default();
    // Until the limits are agreed, no frame may exceed the floor (protocol.md 8.1).
    let before_agreement = Limits {
        max_message: Limits::FLOOR.max_message,
        ..proposal
    };
    let reply = frames
        .next(stream, &before_agreement)
        .await
        .map_err(|e| match e {
            ReadError::Closed => Error::ConnectionClosed {
                reason: "the server closed it during the version exchange".into(),
            },
            ReadError::Io(e) => Error::Io(e),
            ReadError::Malformed(detail) => Error::Protocol(detail),
        })?;
    if reply.seq != VERSION_SEQ {
        return Err(Error::Protocol(format!(
            "the server answered Tversion (seq {VERSION_SEQ}) with seq {}",
            reply.seq
        )));
    }
    match reply.msg {
        Message::Rversion { version, limits } => {
            if version != PROTOCOL_VERSION {
                return Err(Error::UnsupportedVersion {
                    detail: format!("it answered version {version:?}"),
                });
            }
            // The server answers the element-wise minimum of the proposal and its
            // own limits: never more than proposed, never outside the bounds.
            if limits != proposal.min(limits) || !limits.is_sane() {
                return Err(Error::Protocol(format!(
                    "the server answered limits {limits:?}, not within the proposal {proposal:?} \
                     and the protocol's bounds"
                )));
            }
            Ok((limits, frames))
        }
        Message::Rerror {
            code: ErrorCode::UnsupportedVersion,
            message,
            ..
        } => Err(Error::UnsupportedVersion { detail: message }),
        other => Err(unexpected(other, srpc_proto::Kind::Tversion)),
    }
}

/// A connection to an sRPC server. Cheap to clone; clones share the connection,
/// which closes when the last clone, [`super::Session`] and [`super::Fid`] is
/// dropped. Calls from many tasks are pipelined on it.
///
/// ```no_run
/// # async fn demo() -> Result<(), srpc::client::Error> {
/// use srpc::client::{Client, PasswordConversation, Trust};
///
/// let pin = "sha256:3f0c…".parse().map_err(srpc::client::Error::from)?;
/// let client = Client::dial("srpc.example.org:7001", "srpc.example.org", Trust::Pin(pin)).await?;
/// let session = client.auth("alice", "/", &mut PasswordConversation::new("s3cret")).await?;
/// let echo = session.walk("echo").await?;
/// assert_eq!(&echo.append(&b"hi"[..]).await?[..], b"hi");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    conn: Arc<Conn>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("limits", &self.conn.limits())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Dials with [`DialOptions::default`]; see [`DialOptions::dial`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), srpc::client::Error> {
    /// use srpc::client::{Client, Trust};
    ///
    /// let client = Client::dial("127.0.0.1:7001", "localhost", Trust::CaFile("ca.pem".into())).await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    pub async fn dial<A>(addr: A, server_name: &str, trust: Trust) -> Result<Client, Error>
    where
        A: ToSocketAddrs + fmt::Display,
    {
        DialOptions::default().dial(addr, server_name, trust).await
    }

    /// The limits negotiated with the server, in force on this connection.
    ///
    /// ```no_run
    /// # fn demo(client: &srpc::client::Client) {
    /// println!("up to {} calls in flight", client.limits().max_pending);
    /// # }
    /// ```
    pub fn limits(&self) -> Limits {
        self.conn.limits()
    }

    /// True once the connection has closed (the server hung up, the stream failed
    /// or the server broke the protocol); every call then fails.
    ///
    /// ```no_run
    /// # fn demo(client: &srpc::client::Client) {
    /// if client.is_closed() {
    ///     eprintln!("reconnect needed");
    /// }
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.conn.shared.is_closed()
    }

    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}
