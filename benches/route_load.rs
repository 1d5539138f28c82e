//! End-to-end load generator for `Route` over loopback: starts the real
//! `pointsman serve` (release binary, real encoder, heads, RouterBench
//! catalog and router artifact, SQLite store in a temporary directory),
//! drives `pointsman.v1.Router/Route` with a tonic client in a closed loop
//! (N requests in flight) and prints, per setting, the requests answered,
//! p50 and p99 latency, throughput and the server's resident memory.
//!
//! ```sh
//! cargo bench -p pointsman-cli --bench route_load                 # table
//! cargo bench -p pointsman-cli --bench route_load -- --json       # plus one JSON line per setting
//! cargo bench -p pointsman-cli --bench route_load -- --concurrency 1,16 --kinds short --requests 200 --seconds 10
//! cargo bench -p pointsman-cli --bench route_load -- --kinds short --repeated-pool 64  # plus prompt-cache rows
//! ```
//!
//! Options: `--concurrency 1,16,64`, `--kinds short,long`, `--requests N`
//! (per setting, default 300), `--seconds S` (per setting, default 20; a
//! setting stops issuing requests at whichever comes first, and the ones in
//! flight finish), `--warmup N` (untimed requests after each server start,
//! default 4), `--repeated-pool N` (after the distinct rows of each kind, the
//! same concurrencies again with clients cycling through a pool of N
//! distinct prompts of that kind, labelled "short, repeated (pool of N)": one
//! untimed pass over the pool fills the server's prompt cache, so with the
//! default `--prompt-cache` every timed request is a cache hit; the rows
//! report the hits and misses the server counted), `--same-prompt` (every
//! request of every row repeats one prompt, labelled "repeated"; all but the
//! first are cache hits), `--server-arg ARG` (repeatable, passed to `serve`,
//! e.g. `--server-arg=--max-batch=8` or `--server-arg=--prompt-cache=0`),
//! `--store URL` (the outcome store: a PostgreSQL URL, e.g. under
//! scripts/with-postgres `--store "$POINTSMAN_TEST_POSTGRES_URL"`; default a
//! SQLite file in a temporary directory per server start), `--json`.
//!
//! Prompts are real and distinct: every prompt under training-data/ and in
//! examples/prompts.jsonl, deduplicated, taken round-robin across the files
//! (so no one dataset dominates) and kept when the encoder's tokenizer counts
//! 15–25 tokens (short) or 180–230 tokens (long). No prompt is sent twice in
//! a distinct row (warm-up included); should a run need more than the pool holds,
//! later requests reuse a prompt with " (request N)" appended and the output
//! says how many. The server is restarted for every setting so its peak
//! resident memory (VmHWM) belongs to that setting.
//!
//! Not run by `cargo test` (`test = false`; and without cargo bench's
//! `--bench` flag it only prints how to run it).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pointsman_classifier::{Classifier, DeviceChoice};
use pointsman_records::read_records;
use pointsman_server::pb::router_client::RouterClient;
use pointsman_server::pb::RouteRequest;
use serde_json::json;
use tonic::transport::Channel;

mod bench_args;
mod serve_process;
use bench_args::Flags;
use serve_process::{percentile, repo, ServeProcess};

struct Opts {
    concurrency: Vec<usize>,
    kinds: Vec<Kind>,
    requests: usize,
    seconds: f64,
    warmup: usize,
    same_prompt: bool,
    /// Also run rows that cycle through this many prompts per kind.
    repeated_pool: Option<usize>,
    server_args: Vec<String>,
    json: bool,
}

/// One row of the output: a server start and a closed-loop run.
#[derive(Clone, Copy, Debug)]
struct Setting {
    kind: Kind,
    concurrency: usize,
    /// None: distinct prompts; Some(n): clients cycle through n prompts.
    pool: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Short,
    Long,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Short => "short",
            Kind::Long => "long",
        }
    }
    /// Tokens as the encoder counts them ([CLS] and [SEP] included).
    fn tokens(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Kind::Short => 15..=25,
            Kind::Long => 180..=230,
        }
    }
    /// A cheap character pre-filter before tokenizing.
    fn chars(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Kind::Short => 20..=200,
            Kind::Long => 300..=2000,
        }
    }
}

fn usage() -> &'static str {
    "cargo bench -p pointsman-cli --bench route_load -- [--concurrency 1,16,64] [--kinds short,long] \
     [--requests 300] [--seconds 20] [--warmup 4] [--repeated-pool N] [--same-prompt] [--server-arg ARG]... [--store URL] [--json]"
}

fn parse_args() -> Result<Option<Opts>, String> {
    let mut o = Opts {
        concurrency: vec![1, 16, 64],
        kinds: vec![Kind::Short, Kind::Long],
        requests: 300,
        seconds: 20.0,
        warmup: 4,
        same_prompt: false,
        repeated_pool: None,
        server_args: vec![],
        json: false,
    };
    let mut bench = false;
    let mut flags = Flags::from_env();
    while let Some((a, flag)) = flags.next_flag() {
        let num = |name: &str, v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .ok_or(format!("{name}: `{v}` is not a positive number"))
        };
        match flag.as_str() {
            "--bench" => bench = true,
            "--json" => o.json = true,
            "--same-prompt" => o.same_prompt = true,
            "--concurrency" => {
                o.concurrency = flags
                    .value("--concurrency")?
                    .split(',')
                    .map(|s| num("--concurrency", s.to_string()).map(|x| x as usize))
                    .collect::<Result<_, _>>()?
            }
            "--kinds" => {
                o.kinds = flags
                    .value("--kinds")?
                    .split(',')
                    .map(|s| match s {
                        "short" => Ok(Kind::Short),
                        "long" => Ok(Kind::Long),
                        _ => Err(format!("--kinds: `{s}` is not short or long")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--requests" => o.requests = num("--requests", flags.value("--requests")?)? as usize,
            "--seconds" => o.seconds = num("--seconds", flags.value("--seconds")?)?,
            "--repeated-pool" => {
                let v = flags.value("--repeated-pool")?;
                o.repeated_pool = Some(num("--repeated-pool", v)? as usize)
            }
            "--warmup" => {
                let v = flags.value("--warmup")?;
                o.warmup = v.parse().map_err(|_| format!("--warmup: `{v}`"))?
            }
            "--server-arg" => o.server_args.push(flags.value("--server-arg")?),
            "--store" => {
                let v = flags.value("--store")?;
                o.server_args.push(format!("--store={v}"))
            }
            "-h" | "--help" => return Err(usage().into()),
            // cargo test passes test-harness filters; nothing to filter here.
            _ if !bench && !a.starts_with("--") => {}
            _ => return Err(format!("unknown argument `{a}`\n{}", usage())),
        }
    }
    Ok(bench.then_some(o))
}

/// Every .jsonl file under `dir`, sorted.
fn jsonl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            jsonl_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
    out.sort();
}

/// Distinct real prompts of one kind with their token counts, round-robin
/// across the files, at most `want`.
fn prompt_pool(
    clf: &Classifier,
    kind: Kind,
    want: usize,
    skip: &HashSet<String>,
) -> Vec<(String, usize)> {
    let mut files = Vec::new();
    jsonl_files(&repo().join("training-data"), &mut files);
    files.push(repo().join("examples/prompts.jsonl"));
    let per_file: Vec<Vec<String>> = files
        .iter()
        .filter_map(|f| std::fs::File::open(f).ok())
        .map(|f| {
            read_records(BufReader::new(f))
                .filter_map(Result::ok)
                .map(|r| r.prompt)
                .filter(|p| kind.chars().contains(&p.chars().count()))
                .collect()
        })
        .collect();
    let mut seen: HashSet<String> = skip.clone();
    let mut pool = Vec::new();
    let longest = per_file.iter().map(Vec::len).max().unwrap_or(0);
    'outer: for i in 0..longest {
        for prompts in &per_file {
            let Some(p) = prompts.get(i) else { continue };
            if seen.contains(p) {
                continue;
            }
            let n = clf.encoder().token_count(p).unwrap_or(0);
            if kind.tokens().contains(&n) {
                seen.insert(p.clone());
                pool.push((p.clone(), n));
                if pool.len() >= want {
                    break 'outer;
                }
            }
        }
    }
    pool
}

struct Server {
    process: ServeProcess,
    addr: String,
    metrics: String,
}

impl Server {
    /// Starts `pointsman serve` on 127.0.0.1 port 0 (benches/serve_process.rs).
    fn start(extra: &[String]) -> Server {
        let process = ServeProcess::start(extra, |_| Vec::new());
        Server {
            addr: process.addr("grpc"),
            metrics: process.addr("metrics"),
            process,
        }
    }

    async fn client(&self) -> RouterClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to the server");
        RouterClient::new(ch)
    }

    /// (VmRSS, VmHWM) in MiB from /proc/<pid>/status.
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The server's /metrics page.
    fn scrape(&self) -> Option<String> {
        let mut s = std::net::TcpStream::connect(&self.metrics).ok()?;
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics).ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    }

    /// Sum and count of a Prometheus histogram from /metrics.
    fn histogram(&self, name: &str) -> Option<(f64, f64)> {
        let body = self.scrape()?;
        Some((
            sample(&body, &format!("{name}_sum"))?,
            sample(&body, &format!("{name}_count"))?,
        ))
    }

    /// The prompt cache's (hits, misses) counters from /metrics.
    fn cache_counters(&self) -> Option<(f64, f64)> {
        let body = self.scrape()?;
        Some((
            sample(&body, "pointsman_prompt_cache_hits_total")?,
            sample(&body, "pointsman_prompt_cache_misses_total")?,
        ))
    }
}

/// The value of an unlabelled sample in Prometheus text.
fn sample(body: &str, name: &str) -> Option<f64> {
    let key = format!("{name} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

struct Outcome {
    latencies_ms: Vec<f64>,
    errors: BTreeMap<String, usize>,
    elapsed_s: f64,
    stopped_by_time: bool,
}

impl Outcome {
    /// Adds the fields every row reports: counts, latency percentiles,
    /// throughput and the server's memory (VmRSS, VmHWM in MiB).
    fn add_timings(&self, row: &mut serde_json::Value, (rss, hwm): (f64, f64)) {
        let mut lat = self.latencies_ms.clone();
        lat.sort_by(f64::total_cmp);
        let answered = lat.len();
        let fields = json!({
            "requests": answered,
            "errors": self.errors,
            "stopped_by": if self.stopped_by_time { "time" } else { "count" },
            "elapsed_s": r2(self.elapsed_s),
            "p50_ms": r2(percentile(&lat, 50.0)),
            "p99_ms": r2(percentile(&lat, 99.0)),
            "mean_ms": r2(lat.iter().sum::<f64>() / answered.max(1) as f64),
            "max_ms": r2(lat.last().copied().unwrap_or(f64::NAN)),
            "throughput_rps": r2(answered as f64 / self.elapsed_s),
            "server_vmrss_mib": r2(rss),
            "server_vmhwm_mib": r2(hwm),
        });
        if let (Some(row), serde_json::Value::Object(fields)) = (row.as_object_mut(), fields) {
            row.extend(fields);
        }
    }
}

/// Rounded to two decimals for the report.
fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Closed loop: `concurrency` clients, each with its own connection, each
/// sending its next request as soon as the previous one is answered.
async fn drive(
    server: &Server,
    prompts: Arc<Vec<String>>,
    concurrency: usize,
    max_requests: usize,
    seconds: f64,
) -> Outcome {
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        clients.push(server.client().await);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for mut c in clients {
        let (next, prompts) = (next.clone(), prompts.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            let mut timed_out = false;
            loop {
                if Instant::now() >= until {
                    timed_out = true;
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max_requests {
                    break;
                }
                let mut req = tonic::Request::new(RouteRequest {
                    prompt: prompts[i % prompts.len()].clone(),
                    ..Default::default()
                });
                req.set_timeout(Duration::from_secs(120));
                let t = Instant::now();
                match c.route(req).await {
                    Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
                    Err(s) => *errors.entry(format!("{:?}", s.code())).or_default() += 1,
                }
            }
            (lat, errors, timed_out)
        }));
    }
    let mut out = Outcome {
        latencies_ms: Vec::new(),
        errors: BTreeMap::new(),
        elapsed_s: 0.0,
        stopped_by_time: false,
    };
    for t in tasks {
        let (lat, errors, timed_out) = t.await.expect("client task");
        out.latencies_ms.extend(lat);
        for (k, v) in errors {
            *out.errors.entry(k).or_default() += v;
        }
        out.stopped_by_time |= timed_out;
    }
    out.elapsed_s = start.elapsed().as_secs_f64();
    out
}

fn main() {
    let not_run = format!(
        "route_load: a load generator, not a test; run it with {}",
        usage()
    );
    let Some(opts) = bench_args::options_or_exit(parse_args(), &not_run) else {
        return;
    };
    // Per kind: the distinct rows, then (with --repeated-pool) the repeated ones.
    let pools_wanted: Vec<Option<usize>> = std::iter::once(None)
        .chain(opts.repeated_pool.map(Some))
        .collect();
    let settings: Vec<Setting> = opts
        .kinds
        .iter()
        .flat_map(|&kind| {
            let concurrency = &opts.concurrency;
            pools_wanted.iter().flat_map(move |&pool| {
                concurrency.iter().map(move |&concurrency| Setting {
                    kind,
                    concurrency,
                    pool,
                })
            })
        })
        .collect();

    // Distinct prompts for every request of every setting (warm-up included).
    let clf = Classifier::load(
        &repo().join("models/all-MiniLM-L6-v2"),
        &repo().join("models/heads/task-difficulty.safetensors"),
        DeviceChoice::Cpu,
    )
    .expect("run scripts/fetch-model and keep models/heads in place");
    let mut pools: BTreeMap<&str, Vec<(String, usize)>> = BTreeMap::new();
    let mut used = HashSet::new();
    for &kind in &opts.kinds {
        let want = opts.concurrency.len() * (opts.requests + opts.warmup);
        let pool = prompt_pool(&clf, kind, want, &used);
        assert!(!pool.is_empty(), "no {} prompts found", kind.name());
        used.extend(pool.iter().map(|(p, _)| p.clone()));
        eprintln!(
            "{} prompts: {} distinct real ones (a run needs at most {want})",
            kind.name(),
            pool.len(),
        );
        pools.insert(kind.name(), pool);
    }
    drop(clf);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut offsets: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    for setting in settings {
        let Setting {
            kind,
            concurrency,
            pool: repeated,
        } = setting;
        let pool = &pools[kind.name()];
        if let Some(n) = repeated {
            let row = run_repeated(&runtime, &opts, setting, pool, n);
            eprintln!("{}", summary_line(&row));
            if opts.json {
                println!("{row}");
            }
            rows.push(row);
            continue;
        }
        let offset = offsets.entry(kind.name()).or_default();
        // This setting's prompts: the next unused stretch of the pool, or,
        // when the pool runs out, reused prompts made distinct by a suffix.
        let need = opts.requests + opts.warmup;
        let start = *offset;
        let (prompts, tokens): (Vec<String>, Vec<usize>) = (0..need)
            .map(|i| {
                if opts.same_prompt {
                    return pool[0].clone();
                }
                let j = start + i;
                let (p, n) = &pool[j % pool.len()];
                if j < pool.len() {
                    (p.clone(), *n)
                } else {
                    (format!("{p} (request {j})"), *n)
                }
            })
            .unzip();
        let (warm, timed) = prompts.split_at(opts.warmup);
        let server = Server::start(&opts.server_args);
        let (outcome, before) = runtime.block_on(async {
            let mut c = server.client().await;
            for p in warm {
                c.route(RouteRequest {
                    prompt: p.clone(),
                    ..Default::default()
                })
                .await
                .expect("warm-up Route (is models/router/routerbench.json in place?)");
            }
            // Encoder-pass histograms after the warm-up, subtracted below.
            let before = [
                server.histogram("pointsman_batch_size"),
                server.histogram("pointsman_encoder_seconds"),
            ];
            let outcome = drive(
                &server,
                Arc::new(timed.to_vec()),
                concurrency,
                opts.requests,
                opts.seconds,
            )
            .await;
            (outcome, before)
        });
        let answered = outcome.latencies_ms.len();
        // Count what was sent, so the next setting starts on fresh prompts.
        let sent = opts.warmup + answered + outcome.errors.values().sum::<usize>();
        *offset += sent;
        let reused = if opts.same_prompt {
            0
        } else {
            (start..start + sent).filter(|&j| j >= pool.len()).count()
        };
        let (rss, hwm) = server.memory_mib();
        let delta = |now: Option<(f64, f64)>, was: Option<(f64, f64)>| {
            let ((s1, n1), (s0, n0)) = (now?, was?);
            Some((s1 - s0, n1 - n0))
        };
        let batch = delta(server.histogram("pointsman_batch_size"), before[0]);
        let pass = delta(server.histogram("pointsman_encoder_seconds"), before[1]);
        drop(server);

        // Tokens of the prompts this setting sent (suffixed reuses counted as their original).
        let sent_tokens = &tokens[opts.warmup..sent.min(tokens.len())];
        let tokens_mean =
            sent_tokens.iter().sum::<usize>() as f64 / sent_tokens.len().max(1) as f64;
        let mut row = json!({
            "setting": format!("{} c={concurrency}{}", kind.name(), if opts.same_prompt { " repeated" } else { "" }),
            "kind": kind.name(),
            "concurrency": concurrency,
            "prompts": if opts.same_prompt { "repeated (one prompt)" } else if reused > 0 { "distinct (some with a suffix)" } else { "distinct" },
            "reused_with_suffix": reused,
            "mean_encoder_batch": batch.map(|(s, n)| r2(s / n.max(1.0))),
            "mean_encoder_pass_ms": pass.map(|(s, n)| r2(s * 1e3 / n.max(1.0))),
            "tokens_mean": r2(tokens_mean),
            "warmup": opts.warmup,
            "limits": {"requests": opts.requests, "seconds": opts.seconds},
            "server_args": opts.server_args,
        });
        outcome.add_timings(&mut row, (rss, hwm));
        eprintln!("{}", summary_line(&row));
        if opts.json {
            println!("{row}");
        }
        rows.push(row);
    }
    let table = table(&rows);
    if opts.json {
        eprintln!("{table}");
    } else {
        println!("{table}");
    }
}

/// A repeated-prompt row: `n` prompts of the setting's kind (the first `n`
/// of its pool), one untimed pass over them (which fills the server's prompt
/// cache), then the clients cycle through them. Reports the cache hits and
/// misses the server counted during the timed part, so a row run with the
/// cache off (`--server-arg=--prompt-cache=0`) or too small says so.
fn run_repeated(
    runtime: &tokio::runtime::Runtime,
    opts: &Opts,
    setting: Setting,
    pool: &[(String, usize)],
    n: usize,
) -> serde_json::Value {
    let (prompts, tokens): (Vec<String>, Vec<usize>) = (0..n)
        .map(|j| {
            let (p, t) = &pool[j % pool.len()];
            if j < pool.len() {
                (p.clone(), *t)
            } else {
                (format!("{p} (request {j})"), *t)
            }
        })
        .unzip();
    let server = Server::start(&opts.server_args);
    let (outcome, before) = runtime.block_on(async {
        let mut c = server.client().await;
        for p in &prompts {
            c.route(RouteRequest {
                prompt: p.clone(),
                ..Default::default()
            })
            .await
            .expect("warm-up Route (is models/router/routerbench.json in place?)");
        }
        let before = (
            server.histogram("pointsman_batch_size"),
            server.cache_counters(),
        );
        let outcome = drive(
            &server,
            Arc::new(prompts.clone()),
            setting.concurrency,
            opts.requests,
            opts.seconds,
        )
        .await;
        (outcome, before)
    });
    let (rss, hwm) = server.memory_mib();
    let delta = |now: Option<(f64, f64)>, was: Option<(f64, f64)>| {
        let ((a1, b1), (a0, b0)) = (now?, was?);
        Some((a1 - a0, b1 - b0))
    };
    let encoded = delta(server.histogram("pointsman_batch_size"), before.0);
    let cache = delta(server.cache_counters(), before.1);
    drop(server);

    let label = format!("{}, repeated (pool of {n})", setting.kind.name());
    let mut row = json!({
        "setting": format!("{label} c={}", setting.concurrency),
        "kind": setting.kind.name(),
        "concurrency": setting.concurrency,
        "prompts": format!("repeated (pool of {n}, warmed by one pass)"),
        "pool": n,
        // Prompts the encoder read during the timed part (0 when all hit).
        "encoder_prompts": encoded.map(|(sum, _)| sum),
        "mean_encoder_batch": encoded.map(|(sum, passes)| r2(sum / passes.max(1.0))),
        "prompt_cache_hits": cache.map(|(hits, _)| hits),
        "prompt_cache_misses": cache.map(|(_, misses)| misses),
        "tokens_mean": r2(tokens.iter().sum::<usize>() as f64 / tokens.len().max(1) as f64),
        "warmup": n,
        "limits": {"requests": opts.requests, "seconds": opts.seconds},
        "server_args": opts.server_args,
    });
    outcome.add_timings(&mut row, (rss, hwm));
    row
}

fn summary_line(r: &serde_json::Value) -> String {
    let mut line = format!(
        "{}: {} requests in {} s, p50 {} ms, p99 {} ms, {} req/s, RSS {} MiB (peak {} MiB), errors {}",
        r["setting"].as_str().unwrap_or(""),
        r["requests"],
        r["elapsed_s"],
        r["p50_ms"],
        r["p99_ms"],
        r["throughput_rps"],
        r["server_vmrss_mib"],
        r["server_vmhwm_mib"],
        r["errors"]
    );
    // Repeated rows only: whether the timed requests really skipped the encoder.
    if let Some(hits) = r.get("prompt_cache_hits") {
        line += &format!(
            ", prompt cache {hits} hits / {} misses, {} prompts encoded",
            r["prompt_cache_misses"], r["encoder_prompts"]
        );
    }
    line
}

fn table(rows: &[serde_json::Value]) -> String {
    let mut s = String::from(
        "| setting | requests | p50 ms | p99 ms | req/s | mean encoder batch | server VmRSS MiB | VmHWM MiB | errors |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["setting"].as_str().unwrap_or(""),
            r["requests"],
            r["p50_ms"],
            r["p99_ms"],
            r["throughput_rps"],
            r["mean_encoder_batch"],
            r["server_vmrss_mib"],
            r["server_vmhwm_mib"],
            r["errors"]
                .as_object()
                .map_or(0, |e| e.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        );
    }
    s
}
