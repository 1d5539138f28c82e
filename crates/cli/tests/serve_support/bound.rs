//! The first stdout line of `pointsman serve`: the JSON object of the
//! addresses it bound (`{"grpc": ..., "metrics": ..., "http": ...}`).
//! Shared by the tests (serve_support) and the end-to-end benches
//! (benches/serve_process.rs includes this file with `#[path]`).

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;
use std::time::Duration;

/// Reads the line on a thread, so a server that never prints fails the
/// caller after `within` instead of hanging it.
pub fn read_bound_within(stdout: ChildStdout, within: Duration) -> serde_json::Value {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(within)
        .expect("the server printed its addresses");
    serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("the server's first line {line:?}: {e}"))
}
