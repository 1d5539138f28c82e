//! What the end-to-end benches share: the repository root, a `pointsman
//! serve` child process started on port 0 (its addresses read from the one
//! JSON line it prints, as crates/cli/tests/serve_support does) and
//! percentiles. Included by `route_load` and `gateway_overhead` with `mod`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "../crates/cli/tests/serve_support/bound.rs"]
mod bound;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `pointsman serve` with its SQLite store in a temporary
/// directory; killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    /// The addresses the server printed: `grpc`, `metrics`, `http`.
    pub bound: serde_json::Value,
    /// Kept so the store (and any prepared files) outlive the server.
    pub _dir: tempfile::TempDir,
}

impl ServeProcess {
    /// `pointsman serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0
    /// --store <tmp> --catalog models/catalogs/routerbench.toml` plus `extra`,
    /// run from the repository root; waits (up to 120 s) for the addresses.
    /// `prepare` may write files into the temporary directory first and
    /// returns more arguments (e.g. `--upstreams <tmp>/upstreams.toml`).
    /// A `--store=...` in `extra` (e.g. a PostgreSQL URL) replaces the
    /// temporary SQLite file.
    pub fn start(extra: &[String], prepare: impl FnOnce(&std::path::Path) -> Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.db");
        let store_arg = if extra.iter().any(|a| a.starts_with("--store")) {
            vec![]
        } else {
            vec!["--store".to_string(), store.display().to_string()]
        };
        let prepared = prepare(dir.path());
        let mut child = Command::new(env!("CARGO_BIN_EXE_pointsman"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(store_arg)
            .args(["--catalog", "models/catalogs/routerbench.toml"])
            // The router is serve's default (models/router/routerbench.json),
            // so `--server-arg=--router --server-arg=FILE` can change it
            // (another encoder needs its own router artifact).
            .args(prepared)
            .args(extra)
            .current_dir(repo())
            .env("POINTSMAN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pointsman serve");
        let bound =
            bound::read_bound_within(child.stdout.take().unwrap(), Duration::from_secs(120));
        ServeProcess {
            child,
            bound,
            _dir: dir,
        }
    }

    /// One of the printed addresses (`grpc`, `metrics`, `http`).
    pub fn addr(&self, name: &str) -> String {
        self.bound[name]
            .as_str()
            .unwrap_or_else(|| panic!("the server printed no {name} address"))
            .to_string()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The q-th percentile (0–100) of sorted values, interpolated.
pub use pointsman_eval::metrics::percentile;
