//! Starts tests/stub_upstream.py as a child process. Shared by the upstream
//! tests (support/mod.rs) and the gateway tests (crates/cli/tests/
//! gateway_support includes this file with `#[path]`), so the stub is
//! launched one way.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

/// A running stub; killed on drop (and it exits by itself when its stdin,
/// held here, closes: a test that panics leaves nothing behind).
pub struct StubProcess {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
}

impl StubProcess {
    pub fn start() -> StubProcess {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/stub_upstream.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--exit-on-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("stub said {line:?}, not LISTENING <port>"))
            .parse()
            .unwrap();
        StubProcess {
            child,
            _stdin: stdin,
            port,
        }
    }

    /// `http://127.0.0.1:PORT` (the stub's API is under `/v1`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
