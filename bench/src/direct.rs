//! The floor: the same echo handler binary srpcd runs for `/echo`, started
//! with `--socket PATH` as the same user and called over a Unix stream with
//! the handler-link protocol (`Tappend{fid: 0}` → `Rappend`), pipelined the
//! same way. The difference to it is what TLS, the front and the worker cost.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use srpc_proto::{check, decode_bytes, encode_into, Check, Frame, Message, HARD_LIMITS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::measure::{echoed, Echo};

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Message>>>>;

fn lock(waiting: &Waiting) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Message>>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The direct path: a handler-link client as small as the protocol allows, a
/// writer task that batches whatever frames are queued into one write, and a
/// reader task that hands each reply to the call waiting for its seq.
pub struct Direct {
    out: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Waiting,
    next_seq: AtomicU64,
}

impl Direct {
    pub fn new(stream: UnixStream) -> Direct {
        let (rd, wr) = stream.into_split();
        let (out, rx) = mpsc::unbounded_channel();
        let waiting = Waiting::default();
        tokio::spawn(write_frames(wr, rx));
        tokio::spawn(read_frames(rd, Arc::clone(&waiting)));
        Direct {
            out,
            waiting,
            next_seq: AtomicU64::new(1),
        }
    }
}

impl Echo for Direct {
    async fn call(&self, payload: &Bytes) -> Result<(), String> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::with_capacity(64 + payload.len());
        let msg = Message::Tappend {
            fid: 0,
            data: payload.clone(),
        };
        encode_into(&Frame::new(seq, msg), &mut frame);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(seq, tx);
        self.out
            .send(frame)
            .map_err(|_| "the connection to the echo handler is closed".to_owned())?;
        match rx.await {
            Ok(Message::Rappend { data }) => echoed(&data, payload),
            Ok(other) => Err(format!("the echo handler answered {other:?}")),
            Err(_) => Err("the echo handler closed the connection".into()),
        }
    }
}

async fn write_frames(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while let Ok(next) = rx.try_recv() {
            batch.extend_from_slice(&next);
        }
        if wr.write_all(&batch).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_frames(mut rd: OwnedReadHalf, waiting: Waiting) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match check(&buf, &HARD_LIMITS) {
                Check::Complete(len) => {
                    let bytes = buf.split_to(len).freeze();
                    let Ok(frame) = decode_bytes(&bytes, &HARD_LIMITS) else {
                        break 'read;
                    };
                    // A reply nobody waits for is a broken peer: stop.
                    let Some(tx) = lock(&waiting).remove(&frame.seq) else {
                        break 'read;
                    };
                    let _ = tx.send(frame.msg);
                }
                Check::Invalid(_) => break 'read,
                Check::Incomplete => break,
            }
        }
        buf.reserve(64 * 1024);
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Every call still waiting fails at once instead of hanging.
    lock(&waiting).clear();
}

/// The echo handler on a socket of its own, as `user`; killed when dropped.
pub struct DirectEcho {
    child: Child,
    socket: PathBuf,
}

impl DirectEcho {
    pub fn start(dir: &Path, user: &str) -> Result<DirectEcho, String> {
        let account = nix::unistd::User::from_name(user)
            .map_err(|e| format!("looking up {user}: {e}"))?
            .ok_or_else(|| format!("no user {user}"))?;
        let home = dir.join("direct");
        std::fs::create_dir(&home).map_err(|e| format!("{}: {e}", home.display()))?;
        std::os::unix::fs::chown(
            &home,
            Some(account.uid.as_raw()),
            Some(account.gid.as_raw()),
        )
        .map_err(|e| format!("{}: {e}", home.display()))?;
        let socket = home.join("echo.sock");
        let log = std::fs::File::create(dir.join("direct-echo.log")).map_err(|e| e.to_string())?;
        // The binary srpcd runs for /echo; std drops the supplementary groups
        // along with uid and gid.
        let child = Command::new(dir.join("tree/echo"))
            .arg("--socket")
            .arg(&socket)
            .uid(account.uid.as_raw())
            .gid(account.gid.as_raw())
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting the direct echo handler: {e}"))?;
        Ok(DirectEcho { child, socket })
    }

    pub async fn connect(&mut self) -> Result<UnixStream, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match UnixStream::connect(&self.socket).await {
                Ok(stream) => return Ok(stream),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("{}: {e}", self.socket.display()))
                }
                Err(_) => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the direct echo handler exited ({status})"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for DirectEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
