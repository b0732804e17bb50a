//! Idle exit: serving a listener with an idle timeout stops once no connection
//! has been open (and no call in flight) for that long. The clock is tokio's paused
//! test clock, so the durations below are exact and cost no real time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod handler_support;

use std::path::PathBuf;
use std::time::Duration;

use handler_support::{LinkClient, TempDir};
use srpc::handler::{serve_until, Call, Listener, ServeError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const IDLE: Duration = Duration::from_secs(1);

/// Serves an echo (that sleeps 3 s on `slow`) with a 1 s idle timeout and no
/// other way to stop.
fn serve_with_idle_timeout(dir: &TempDir) -> (JoinHandle<Result<(), ServeError>>, PathBuf) {
    let path = dir.join("idle.sock");
    let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let listener = Listener::from_std(socket, "/idle").with_idle_timeout(IDLE);
    assert_eq!(listener.idle_timeout(), Some(IDLE));
    let task = tokio::spawn(serve_until(
        listener,
        |call: Call| async move {
            if &call.data[..] == b"slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Ok(call.data)
        },
        std::future::pending(),
    ));
    (task, path)
}

/// Waits (in test time) for serving to end on its own; how long it took.
async fn ends_after(task: JoinHandle<Result<(), ServeError>>, since: Instant) -> Duration {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("serving did not stop when idle")
        .unwrap()
        .unwrap();
    since.elapsed()
}

fn assert_about(took: Duration, expected: Duration) {
    assert!(
        took >= expected && took < expected + Duration::from_millis(100),
        "stopped after {took:?}, expected {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn with_no_connection_serving_stops_after_the_idle_timeout() {
    let dir = TempDir::new("idle-none");
    let start = Instant::now();
    let (task, _) = serve_with_idle_timeout(&dir);
    assert_about(ends_after(task, start).await, IDLE);
}

#[tokio::test(start_paused = true)]
async fn an_open_connection_keeps_serving_and_closing_it_restarts_the_clock() {
    let dir = TempDir::new("idle-open");
    let (task, path) = serve_with_idle_timeout(&dir);
    let mut client = LinkClient::connect(&path).await;
    assert_eq!(client.call_ok(1, "hi").await, "hi");
    tokio::time::sleep(IDLE * 10).await;
    assert!(!task.is_finished(), "stopped with a connection open");
    // Still served, not merely still running.
    assert_eq!(client.call_ok(2, "still").await, "still");
    drop(client);
    let closed = Instant::now();
    assert_about(ends_after(task, closed).await, IDLE);
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_on_a_closed_connection_keeps_serving() {
    let dir = TempDir::new("idle-call");
    let (task, path) = serve_with_idle_timeout(&dir);
    let mut client = LinkClient::connect(&path).await;
    client.append(1, "slow").await;
    // Let the call start before the connection goes away.
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(client);
    let closed = Instant::now();
    // The call runs 3 s from its start; the idle clock starts when it is done.
    let took = ends_after(task, closed).await;
    assert_about(
        took + Duration::from_millis(10),
        Duration::from_secs(3) + IDLE,
    );
}
