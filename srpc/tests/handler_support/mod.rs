//! Shared by the handler_* tests: a client that speaks the handler link as
//! srpcd's worker does, a server started on a temporary socket, temporary dirs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use srpc::handler::{serve_until, HandlerFn, Listener, ServeError};
use srpc_proto::{check, decode, encode, Check, Frame, Message, INTERNAL_LINK_LIMITS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Only to stop a broken test from hanging; nothing waits this long when it works.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A directory under the system temp dir, world-searchable (so processes running
/// as other users can reach sockets in it), removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("srpc-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The worker's side of a handler link.
pub struct LinkClient {
    stream: UnixStream,
    buf: BytesMut,
}

impl LinkClient {
    pub async fn connect(path: &Path) -> LinkClient {
        LinkClient::new(UnixStream::connect(path).await.unwrap())
    }

    pub fn new(stream: UnixStream) -> LinkClient {
        LinkClient {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, frame: &Frame) {
        self.send_raw(&encode(frame)).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn append(&mut self, seq: u64, data: impl Into<Bytes>) {
        let msg = Message::Tappend {
            fid: 0,
            data: data.into(),
        };
        self.send(&Frame::new(seq, msg)).await;
    }

    /// Closes the writing side only; replies can still be read.
    pub async fn shutdown_write(&mut self) {
        self.stream.shutdown().await.unwrap();
    }

    /// The next frame, or `None` at end of stream.
    pub async fn recv(&mut self) -> Option<Frame> {
        tokio::time::timeout(TIMEOUT, self.recv_inner())
            .await
            .expect("no frame from the handler in time")
    }

    async fn recv_inner(&mut self) -> Option<Frame> {
        loop {
            match check(&self.buf, &INTERNAL_LINK_LIMITS) {
                Check::Complete(len) => {
                    let frame = self.buf.split_to(len);
                    return Some(decode(&frame, &INTERNAL_LINK_LIMITS).unwrap());
                }
                Check::Invalid(e) => panic!("handler sent a bad frame: {e}"),
                Check::Incomplete => {}
            }
            if self.stream.read_buf(&mut self.buf).await.unwrap() == 0 {
                assert!(self.buf.is_empty(), "stream ended inside a frame");
                return None;
            }
        }
    }

    /// One call, waiting for its reply (no other call may be pending).
    pub async fn call(&mut self, seq: u64, data: impl Into<Bytes>) -> Message {
        self.append(seq, data).await;
        let reply = self
            .recv()
            .await
            .expect("connection closed instead of a reply");
        assert_eq!(reply.seq, seq);
        reply.msg
    }

    /// A call whose reply must be `Rappend`: its data as text.
    pub async fn call_ok(&mut self, seq: u64, data: impl Into<Bytes>) -> String {
        match self.call(seq, data).await {
            Message::Rappend { data } => String::from_utf8(data.to_vec()).unwrap(),
            other => panic!("expected Rappend, got {other:?}"),
        }
    }
}

/// A handler served on a socket in a temporary directory until `stop`.
pub struct Server {
    pub path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    _dir: TempDir,
}

impl Server {
    /// Serves `handler` as endpoint `/test` on a fresh socket.
    pub fn start<H: HandlerFn>(handler: H) -> Server {
        let dir = TempDir::new("handler");
        let path = dir.join("endpoint.sock");
        let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
        Server::run(Listener::from_std(socket, "/test"), handler, path, dir)
    }

    /// Serves `handler` on a listener made from a path in a fresh directory.
    pub fn start_with<H: HandlerFn>(make: impl FnOnce(&Path) -> Listener, handler: H) -> Server {
        let dir = TempDir::new("handler");
        let path = dir.join("endpoint.sock");
        let listener = make(&path);
        Server::run(listener, handler, path, dir)
    }

    fn run<H: HandlerFn>(listener: Listener, handler: H, path: PathBuf, dir: TempDir) -> Server {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve_until(listener, handler, async move {
            let _ = stopped.await;
        }));
        Server {
            path,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the server and checks it ended cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

/// The text of an `Rerror`'s code name and message, for matching.
pub fn expect_error(msg: &Message) -> (srpc_proto::ErrorCode, &str) {
    match msg {
        Message::Rerror {
            code,
            message,
            errno,
        } => {
            assert_eq!(*errno, None);
            (*code, message.as_str())
        }
        other => panic!("expected Rerror, got {other:?}"),
    }
}
