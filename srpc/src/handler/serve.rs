//! The accept loop, and the fd-passing side of service mode.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use srpc_proto::Limits;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Sleep;

use super::link::serve_link;
use super::listener::{Listener, Mode};
use super::{HandlerFn, ServeError};

/// Longest endpoint path accepted with a passed connection.
const MAX_ENDPOINT: usize = 4096;

/// Pause after a failed `accept` (e.g. out of fds) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves calls from `listener` with `handler` until the process gets SIGTERM or
/// SIGINT; then stops as [`serve_until`] does. Needs a tokio runtime with I/O,
/// signal and time drivers enabled.
///
/// ```no_run
/// use srpc::handler::{serve, Bytes, Call, CallError, Listener};
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let listener = Listener::from_env()?; // before the runtime's threads start
///     let runtime = tokio::runtime::Runtime::new()?;
///     runtime.block_on(serve(listener, |call: Call| async move {
///         if call.data.is_empty() {
///             return Err(CallError::failed("empty request"));
///         }
///         Ok(Bytes::from(format!("hello uid {}", call.caller.uid)))
///     }))?;
///     Ok(())
/// }
/// ```
pub async fn serve<H: HandlerFn>(listener: Listener, handler: H) -> Result<(), ServeError> {
    let io = |source| ServeError::Io {
        what: "install signal handlers",
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    };
    serve_until(listener, handler, stop).await
}

/// Serves calls from `listener` with `handler` until `shutdown` completes.
///
/// Each connection is served on its own task, and each call on a connection runs
/// as its own task, so calls are pipelined and answered as they finish. Errors on
/// one connection are logged (with `tracing`) and end only that connection. When
/// `shutdown` completes, the listener is closed and every connection and call still
/// running is dropped (the callers see their calls fail).
///
/// If the listener has an idle timeout ([`Listener::with_idle_timeout`], or
/// `SRPC_IDLE_TIMEOUT_SECS` read by [`Listener::from_env`]), serving also stops,
/// returning `Ok(())`, once no connection has been open (and so no call in flight)
/// for that long.
///
/// Returns an error only if the listener cannot be used at all.
///
/// ```
/// use std::os::unix::net::UnixListener;
/// use srpc::handler::{serve_until, Call, Listener};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("doc-echo-{}", std::process::id()));
/// let listener = Listener::from_std(UnixListener::bind(&path)?, "/echo");
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(serve_until(
///     listener,
///     |call: Call| async move { Ok(call.data) },
///     async move {
///         let _ = stopped.await;
///     },
/// ));
/// // ... connections to `path` are served here ...
/// stop.send(()).unwrap();
/// server.await??;
/// std::fs::remove_file(path)?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_until<H, S>(
    listener: Listener,
    handler: H,
    shutdown: S,
) -> Result<(), ServeError>
where
    H: HandlerFn,
    S: Future<Output = ()>,
{
    let Listener {
        socket,
        mode,
        idle_timeout,
    } = listener;
    socket
        .set_nonblocking(true)
        .map_err(|source| ServeError::Io {
            what: "make the listening socket non-blocking",
            source,
        })?;
    let socket = tokio::net::UnixListener::from_std(socket).map_err(|source| ServeError::Io {
        what: "register the listening socket",
        source,
    })?;
    let handler = Arc::new(handler);
    // Connections received in service mode come back here to be served, so that
    // shutdown stops them along with everything else.
    let (passed_tx, mut passed_rx) = mpsc::channel::<(UnixStream, Arc<str>)>(64);
    // One task per open connection (and per fd-passing connection); a connection's
    // task ends only when its calls are answered, so an empty set means idle.
    let mut tasks = JoinSet::new();
    // Polled only while the set is empty; restarted whenever it changes.
    let idle = tokio::time::sleep(idle_timeout.unwrap_or(Duration::MAX));
    tokio::pin!(shutdown, idle);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = &mut idle, if idle_timeout.is_some() && tasks.is_empty() => {
                tracing::info!(timeout = ?idle_timeout, "idle: stopping");
                break;
            }
            accepted = socket.accept() => match accepted {
                Ok((stream, _)) => {
                    match &mode {
                        Mode::Direct(endpoint) => {
                            tasks.spawn(serve_link(stream, Arc::clone(endpoint), Arc::clone(&handler)));
                        }
                        Mode::FdPassing => {
                            tasks.spawn(receive_connections(stream, passed_tx.clone()));
                        }
                    }
                    restart(idle.as_mut(), idle_timeout);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some((stream, endpoint)) = passed_rx.recv() => {
                tasks.spawn(serve_link(stream, endpoint, Arc::clone(&handler)));
                restart(idle.as_mut(), idle_timeout);
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::warn!(error = %e, "connection task ended abnormally");
                }
                restart(idle.as_mut(), idle_timeout);
            }
        }
    }
    // Dropping the set aborts every connection and, with them, their calls.
    drop(tasks);
    Ok(())
}

/// Starts the idle clock again from now.
fn restart(mut idle: Pin<&mut Sleep>, timeout: Option<Duration>) {
    if let Some(timeout) = timeout {
        // `sleep` saturates a deadline beyond what `Instant` can hold.
        idle.set(tokio::time::sleep(timeout));
    }
}

/// Service mode: receives call connections from srpcd on `passer` and hands them
/// to the accept loop until srpcd closes it or sends something unacceptable.
async fn receive_connections(passer: UnixStream, serve: mpsc::Sender<(UnixStream, Arc<str>)>) {
    match srpc_os::peer_credentials(passer.as_fd()) {
        Ok(peer) if peer.uid == 0 || peer.uid == srpc_os::effective_uid() => {
            tracing::debug!(uid = peer.uid, pid = peer.pid, "fd-passing connection");
        }
        Ok(peer) => {
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "refusing an fd-passing connection from a uid other than root or ours"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot identify an fd-passing connection");
            return;
        }
    }
    let mut buf = vec![0u8; MAX_ENDPOINT + 1];
    loop {
        let received = passer
            .async_io(Interest::READABLE, || {
                srpc_os::recv_fd(passer.as_fd(), &mut buf).map_err(io::Error::from)
            })
            .await;
        let (fd, len) = match received {
            Ok(Some(got)) => got,
            Ok(None) => return,
            Err(e) => {
                // Framing can no longer be trusted on this connection.
                tracing::warn!(error = %e, "bad message on an fd-passing connection; closing it");
                return;
            }
        };
        let endpoint = match endpoint_path(buf.get(..len).unwrap_or_default()) {
            Ok(endpoint) => endpoint,
            Err(why) => {
                // Dropping the fd closes the call connection: its caller sees it fail.
                tracing::warn!("refusing a passed connection: {why}");
                continue;
            }
        };
        let stream = std::os::unix::net::UnixStream::from(fd);
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "cannot use a passed connection");
                continue;
            }
        };
        if serve.send((stream, endpoint)).await.is_err() {
            return;
        }
    }
}

/// The endpoint path sent with a passed connection: UTF-8 and a valid tree path.
fn endpoint_path(bytes: &[u8]) -> Result<Arc<str>, String> {
    let path =
        std::str::from_utf8(bytes).map_err(|e| format!("endpoint path is not UTF-8: {e}"))?;
    srpc_proto::validate_path(path, Limits::default().max_name)
        .map_err(|e| format!("endpoint path {path:?}: {e}"))?;
    Ok(Arc::from(path))
}
