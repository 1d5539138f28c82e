//! Issue 13's soak: the real `pointsman serve` under 64 well-behaved
//! clients while a second process misbehaves (idle connections, stalled
//! uploads, garbage bytes). Bounded to well under 60 s; runs in CI.

mod serve_support;

use std::time::{Duration, Instant};

use pointsman_server::pb;
use pointsman_server::pb::router_client::RouterClient;
use serve_support::*;

/// Resident memory of a process in MB (VmRSS).
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// p99 bound for light calls (Route, Classify, ReportOutcome) in the soak.
/// Measured on the 2-core shared dev VM: see docs/RELIABILITY.md.
const SOAK_LIGHT_P99: Duration = Duration::from_secs(5);
const SOAK_RSS_MB: f64 = 300.0;

// Issue 13's soak, bounded: 64 clients mixing Route, RouteBatch,
// ReportOutcome and Classify with distinct prompts for 20 s, while a
// second process (`soak_hostile_process`: this test binary re-executed)
// opens idle connections, stalls uploads and sends garbage. Every
// well-formed call ends OK or RESOURCE_EXHAUSTED, light calls' p99 stays
// under SOAK_LIGHT_P99, RSS under 300 MB, SIGTERM exits within the drain
// deadline while the hostile process still holds its connections, and
// every acknowledged outcome is in `store export`.
#[test]
fn soak_mixed_load_with_hostile_clients() {
    let mut server = Server::start(Options {
        artifact: true,
        extra: [
            "--drain-timeout",
            "3",
            "--idle-timeout",
            "5",
            "--request-timeout",
            "10",
            "--max-batch-request",
            "16",
            "--max-connections",
            "256",
        ]
        .map(String::from)
        .to_vec(),
    });
    let pid = server.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(SOAK_SECS);
    let addr = server.addr.clone();
    let mut hostile = HostileProcess::spawn(&addr, SOAK_SECS);
    let (light, bad, acked, peak_rss) = rt.block_on(async {
        let mut tasks = Vec::new();
        for client in 0..64usize {
            let mut c = RouterClient::new(
                tonic::transport::Channel::from_shared(format!("http://{addr}"))
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            );
            tasks.push(tokio::spawn(async move {
                let mut light = Vec::new();
                let mut bad = Vec::new();
                let mut acked = Vec::new();
                let mut i = 0usize;
                while Instant::now() < until {
                    i += 1;
                    let prompt = format!(
                        "{} (client {client}, call {i})",
                        PROMPTS[(client + i) % PROMPTS.len()]
                    );
                    let t0 = Instant::now();
                    let result: Result<(), tonic::Status> = match (client + i) % 8 {
                        0 => {
                            let reqs = (0..8)
                                .map(|k| route_request(&format!("{prompt} item {k}")))
                                .collect();
                            c.route_batch(pb::RouteBatchRequest { requests: reqs })
                                .await
                                .map(|r| {
                                    for item in r.into_inner().items {
                                        if let Some(pb::route_batch_item::Result::Error(e)) =
                                            item.result
                                        {
                                            if e.code != tonic::Code::ResourceExhausted as i32 {
                                                bad.push(format!("batch item: {}", e.message));
                                            }
                                        }
                                    }
                                })
                        }
                        1 | 2 => c.classify(pb::ClassifyRequest { prompt }).await.map(|_| ()),
                        _ => match c.route(route_request(&prompt)).await {
                            Ok(r) => {
                                let r = r.into_inner();
                                let report = pb::ReportOutcomeRequest {
                                    decision_id: r.decision_id.clone(),
                                    model: r.model.clone(),
                                    score: 1.0,
                                    ..Default::default()
                                };
                                light.push(t0.elapsed());
                                let t1 = Instant::now();
                                let out = c.report_outcome(report).await;
                                if out.is_ok() {
                                    acked.push(r.decision_id);
                                }
                                light.push(t1.elapsed());
                                out.map(|_| ())
                            }
                            Err(e) => Err(e),
                        },
                    };
                    match result {
                        Ok(()) => {}
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {}
                        Err(s) => bad.push(format!("{:?}: {}", s.code(), s.message())),
                    }
                }
                (light, bad, acked)
            }));
        }
        let mut peak = 0.0f64;
        while Instant::now() < until {
            peak = peak.max(rss_mb(pid));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (mut light, mut bad, mut acked) = (Vec::new(), Vec::new(), Vec::new());
        for t in tasks {
            let (l, b, a) = t.await.unwrap();
            light.extend(l);
            bad.extend(b);
            acked.extend(a);
        }
        peak = peak.max(rss_mb(pid));
        (light, bad, acked, peak)
    });
    let report = hostile.report(Duration::from_secs(15));
    eprintln!("soak: hostile process {}: {report}", hostile.id());
    for kind in ["idle", "stalled", "garbage"] {
        let done = report[kind].as_u64().unwrap();
        assert!(
            done >= HOSTILE_MIN_EACH,
            "hostile process: only {done} {kind}: {report}"
        );
    }
    assert!(
        bad.is_empty(),
        "{} calls failed otherwise: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let mut light = light;
    light.sort();
    let p99 = light[light.len() * 99 / 100];
    eprintln!(
        "soak: {} light calls, p50 {:?}, p99 {:?}, {} outcomes acknowledged, peak RSS {peak_rss:.0} MB",
        light.len(),
        light[light.len() / 2],
        p99,
        acked.len()
    );
    assert!(light.len() > 100, "only {} light calls", light.len());
    assert!(p99 < SOAK_LIGHT_P99, "light p99 {p99:?}");
    assert!(peak_rss < SOAK_RSS_MB, "peak RSS {peak_rss:.0} MB");

    // SIGTERM while the hostile process still holds its idle connections
    // and stalled uploads: the drain deadline must end them.
    assert!(hostile.is_alive(), "the hostile process exited early");
    let t0 = Instant::now();
    server.signal("-TERM");
    let code = server.wait_exit(Duration::from_secs(10));
    assert!(matches!(code, Some(0)), "{code:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(3) + Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    drop(hostile);
    let exported: std::collections::HashSet<String> = export_with_outcomes(&server.store)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let missing = acked.iter().filter(|id| !exported.contains(*id)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged outcomes missing",
        acked.len()
    );
}

/// How long the soak's clients and its hostile process run.
const SOAK_SECS: u64 = 20;
/// The least of each hostile act (idle connection, stalled upload, garbage)
/// the hostile process must have done for the soak to count. It aims at 20
/// acts a second in all (about 130 of each in 20 s).
const HOSTILE_MIN_EACH: u64 = 20;
/// Set to the server's address, turns `soak_hostile_process` on.
const HOSTILE_ADDR_ENV: &str = "POINTSMAN_SOAK_HOSTILE_ADDR";
const HOSTILE_SECS_ENV: &str = "POINTSMAN_SOAK_HOSTILE_SECS";

/// The soak's hostile side, in a process of its own: this test binary
/// re-executed to run only `soak_hostile_process`. Killed on drop; if this
/// process dies first, the pipe to its stdin closes and it exits too.
struct HostileProcess {
    child: std::process::Child,
    _stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl HostileProcess {
    fn spawn(addr: &str, secs: u64) -> HostileProcess {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "soak_hostile_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOSTILE_ADDR_ENV, addr)
            .env(HOSTILE_SECS_ENV, secs.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = send.send(line);
            }
        });
        HostileProcess {
            child,
            _stdin: stdin,
            lines,
        }
    }

    fn id(&self) -> u32 {
        self.child.id()
    }

    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The counts the process prints when its attack time is over.
    fn report(&self, within: Duration) -> serde_json::Value {
        let until = Instant::now() + within;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the hostile process printed no report");
            // libtest may have written "test soak_hostile_process ... "
            // on the same line.
            if let Some((_, json)) = line.split_once("hostile: ") {
                return serde_json::from_str(json).unwrap();
            }
        }
    }
}

impl Drop for HostileProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Not a test of its own: the hostile side of the soak, run in a separate
// process by `soak_mixed_load_with_hostile_clients` with HOSTILE_ADDR_ENV
// set. For SOAK_SECS it opens, 20 times a second in turn, an idle TCP
// connection, a Classify call whose body stops halfway, or a connection
// that sends garbage bytes; then prints what it did and holds every
// connection until it is killed (or its stdin closes: the soak is gone),
// so SIGTERM meets them.
#[test]
#[ignore = "the soak's hostile process: soak_mixed_load_with_hostile_clients runs it"]
fn soak_hostile_process() {
    let Ok(addr) = std::env::var(HOSTILE_ADDR_ENV) else {
        eprintln!("{HOSTILE_ADDR_ENV} is not set: nothing to attack (the soak runs this)");
        return;
    };
    let secs: u64 = std::env::var(HOSTILE_SECS_ENV).unwrap().parse().unwrap();
    runtime(2).block_on(async {
        use tokio::io::AsyncWriteExt;
        let until = Instant::now() + Duration::from_secs(secs);
        let mut held = Vec::new();
        let (mut idle, mut stalled, mut garbage, mut failed) = (0u64, 0u64, 0u64, 0u64);
        let mut n = 0u32;
        while Instant::now() < until {
            n += 1;
            let act = async {
                match n % 3 {
                    0 => {
                        held.push(tokio::net::TcpStream::connect(&addr).await?);
                        idle += 1;
                    }
                    1 => {
                        let prompt = format!("stalled {n} {}", PROMPTS[0]);
                        let (resp, send, _) = stalled_upload(&addr, &prompt).await?;
                        held_streams(resp, send);
                        stalled += 1;
                    }
                    _ => {
                        let mut s = tokio::net::TcpStream::connect(&addr).await?;
                        s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3])
                            .await?;
                        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\ngarbage")
                            .await?;
                        garbage += 1;
                    }
                }
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            };
            match tokio::time::timeout(Duration::from_secs(2), act).await {
                Ok(Ok(())) => {}
                _ => failed += 1,
            }
            if held.len() > 40 {
                held.drain(..20);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let report = serde_json::json!({
            "idle": idle, "stalled": stalled, "garbage": garbage, "failed": failed,
        });
        println!("hostile: {report}");
        let _ = tokio::task::spawn_blocking(|| {
            use std::io::Read;
            let _ = std::io::stdin().read(&mut [0u8; 1]);
        })
        .await;
    });
}

/// Keeps a stalled upload open in the background until the runtime ends.
fn held_streams(resp: h2::client::ResponseFuture, send: h2::SendStream<bytes::Bytes>) {
    tokio::spawn(async move {
        let _send = send;
        let _ = resp.await;
    });
}
