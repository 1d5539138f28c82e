//! What misbehaving clients, signals and limits do to `pointsman serve`
//! (issue 13): the real binary and encoder, raw TCP and raw HTTP/2 clients
//! where tonic's client would not misbehave. One test at a time.

mod serve_support;

use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pointsman_server::pb;
use serve_support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start(extra: &[&str]) -> Server {
    Server::start(Options {
        artifact: true,
        extra: extra.iter().map(|s| s.to_string()).collect(),
    })
}

const CLASSIFY: &str = "pointsman.v1.Router/Classify";

/// Opens a Classify call and sends only the first half of its body: the
/// server holds the call in flight, waiting for the rest.
async fn stalled_upload(
    addr: &str,
    prompt: &str,
) -> (
    h2::client::ResponseFuture,
    h2::SendStream<bytes::Bytes>,
    bytes::Bytes,
) {
    let mut h2 = h2_connect(addr).await;
    let frame = grpc_frame(&pb::ClassifyRequest {
        prompt: prompt.into(),
    });
    let (resp, mut send) = h2.send_request(grpc_head(addr, CLASSIFY), false).unwrap();
    let half = frame.len() / 2;
    send.send_data(frame.slice(..half), false).unwrap();
    (resp, send, frame.slice(half..))
}

// Defect 1: an idle socket and a stalled upload kept the process alive
// forever after SIGTERM. Now the drain ends at --drain-timeout.
#[test]
fn sigterm_exits_at_the_drain_deadline_despite_idle_and_stalled_connections() {
    let _g = serial();
    let mut server = start(&["--drain-timeout", "1"]);
    let rt = runtime();
    let _idle = std::net::TcpStream::connect(&server.addr).unwrap();
    // The h2 handshake has completed, so the server holds the connection.
    let _stalled = rt.block_on(stalled_upload(&server.addr, PROMPTS[0]));

    let t0 = Instant::now();
    server.signal("-TERM");
    let code = server.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(code, Some(0), "exits 0 after the drain deadline");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "exited after {took:?}; the deadline is 1 s"
    );
}

// Defect 1: a second SIGTERM during the drain was ignored. Now it exits at
// once (code 130), long before a 60 s drain deadline.
#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    let _g = serial();
    let mut server = start(&["--drain-timeout", "60"]);
    let rt = runtime();
    let _stalled = rt.block_on(stalled_upload(&server.addr, PROMPTS[1]));
    wait_for_metric(&server, "pointsman_requests_in_flight", |v| v == 1.0);

    server.signal("-TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the first signal only starts the drain"
    );
    let t0 = Instant::now();
    server.signal("-INT");
    assert_eq!(server.wait_exit(Duration::from_secs(5)), Some(130));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

// Defect 13b: a call known (by the in-flight gauge) to be in flight when
// SIGTERM arrives is answered OK, then the process exits 0. No sleeps that
// hope for the right interleaving: the call cannot finish before the
// signal, because half its body is sent only after it.
#[test]
fn a_call_in_flight_at_sigterm_is_answered_then_the_process_exits() {
    let _g = serial();
    let mut server = start(&["--drain-timeout", "30"]);
    let rt = runtime();
    let (resp, mut send, rest) = rt.block_on(stalled_upload(&server.addr, PROMPTS[2]));
    wait_for_metric(&server, "pointsman_requests_in_flight", |v| v == 1.0);

    server.signal("-TERM");
    // Health now says NOT_SERVING and the listener is closed, but the call
    // in flight goes on.
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&server.addr).is_ok() {
        assert!(
            Instant::now() < until,
            "the listener stays open after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.child.try_wait().unwrap().is_none());
    send.send_data(rest, true).unwrap();
    let (status, body) = rt.block_on(grpc_finish(resp)).unwrap();
    assert_eq!(status, "0", "the call in flight is answered OK");
    let answer: pb::ClassifyResponse = prost::Message::decode(&body[5..]).unwrap();
    assert!(!answer.classification.unwrap().task.is_empty());
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Reads until the server closes the connection; None if it stays open.
fn closed_within(mut s: std::net::TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(_) => return Some(t0.elapsed()),
        }
    }
}
