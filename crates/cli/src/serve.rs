//! `pointsman serve`: the gRPC service and the HTTP gateway (see crates/server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use pointsman_classifier::embed_cache;
use pointsman_server::exposure::Listeners;
use pointsman_server::{
    BatchConfig, Exploration, HttpConfig, Limits, NetLimits, RolloutMode, RolloutSignal, Serve,
    ServeConfig, Stopped,
};
use pointsman_store::{OutcomeStore, SqliteStore};

use crate::classify::load_classifier;
use crate::{paths, ModelArgs};

#[derive(Args)]
pub struct ServeArgs {
    /// gRPC address. Loopback by default; to listen on other interfaces, pass e.g. 0.0.0.0:50051 (and turn on TLS and --auth-token-file).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// The outcome store: a SQLite file (created with its folder if missing), or a PostgreSQL URL (postgres://user:password@host:port/db, or postgresql:///db?host=/run/postgresql for a unix socket) that many replicas share. Default: $POINTSMAN_STORE, else $XDG_STATE_HOME/pointsman/outcomes.db, else ~/.local/state/pointsman/outcomes.db.
    #[arg(long, env = "POINTSMAN_STORE")]
    store: Option<String>,
    /// Seconds between polls of the store for a router artifact published with `pointsman store publish` (swapped in after validation; the first poll runs before serving). 0 turns polling off. SIGHUP and Admin.Reload still re-read the files.
    #[arg(long, default_value_t = 2.0, value_parser = seconds_or_zero)]
    publish_poll: f64,
    /// Prometheus metrics over plain HTTP at http://ADDR/metrics (off unless given).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Model catalog (TOML); re-read on SIGHUP or Admin.Reload.
    #[arg(long, default_value = "models/catalogs/routerbench.toml")]
    catalog: PathBuf,
    /// Router artifact from `pointsman train router`; re-read on SIGHUP or Admin.Reload. The default is the shipped artifact for the shipped catalog. `none` serves classify-only: Route then answers FAILED_PRECONDITION.
    #[arg(long, default_value = paths::DEFAULT_ROUTER)]
    router: String,
    /// Store raw prompt text with each decision (off: only the embedding and predictions are stored).
    #[arg(long)]
    store_prompts: bool,
    /// Longest prompt accepted, in UTF-8 bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_prompt_bytes: usize,
    /// Most items in one RouteBatch call.
    #[arg(long, default_value_t = 256)]
    max_batch_request: usize,
    /// Most prompts in one encoder pass.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// Longest a prompt waits for others to share its encoder pass, in milliseconds. 0 (the default) still batches whatever queued while the encoder was busy; waiting only added latency in docs/PERFORMANCE.md's runs.
    #[arg(long, default_value_t = 0)]
    max_wait_ms: u64,
    /// Most prompts waiting for the encoder; beyond it requests get RESOURCE_EXHAUSTED at once.
    #[arg(long, default_value_t = 256)]
    queue_capacity: usize,
    /// Prompts whose encoder output (embedding and task/difficulty prediction) is kept, keyed by sha256, so a repeated prompt skips the encoder; about 2.5 KB each. Decisions and logging still happen per request. 0 turns the cache off.
    #[arg(long, default_value_t = 4096)]
    prompt_cache: usize,
    /// Completion tokens assumed for pricing when a request gives none.
    #[arg(long, default_value_t = 256)]
    output_tokens: u32,
    /// PEM certificate chain: serve TLS (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// File holding a bearer token: Router and Admin calls must send `authorization: Bearer TOKEN`. Also read from $POINTSMAN_AUTH_TOKEN.
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// After SIGTERM/SIGINT, seconds that requests in flight may take to finish; then every connection still open is closed and the process exits. A second signal exits at once.
    #[arg(long, default_value_t = 5.0, value_parser = seconds)]
    drain_timeout: f64,
    /// Most gRPC connections open at once; further ones wait in the kernel's accept backlog until one closes. Keep it below the file-descriptor limit (`ulimit -n`).
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Seconds a connection may send nothing before it is closed (live HTTP/2 clients answer the server's keep-alive pings, so only dead or silent peers are closed).
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    idle_timeout: f64,
    /// Longest a call may take in seconds, reading its request included (a stalled upload is answered CANCELLED); a client's shorter grpc-timeout wins.
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    request_timeout: f64,
    /// Most HTTP/2 streams (concurrent calls) one connection may have open.
    #[arg(long, default_value_t = 64)]
    max_concurrent_streams: u32,
    /// Also serve the OpenAI-compatible HTTP gateway (/v1/chat/completions, /v1/route, /v1/feedback, /v1/models) on this address, e.g. 127.0.0.1:8080. It shares the gRPC listener's TLS, bearer token, limits and drain. Off unless given.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Upstream LLM providers per catalog model (TOML; docs/GATEWAY.md, "Upstreams"), for /v1/chat/completions. Needs --http-listen.
    #[arg(long, requires = "http_listen")]
    upstreams: Option<PathBuf>,
    /// Exploration rate ε in [0, 1): this share of decisions goes to another eligible model (same constraints), drawn in proportion to P(success), and every decision logs the probability its model was chosen with (its propensity) for off-policy evaluation (`pointsman eval --from-store`). 0 (the default) never explores; `eval --explore ε` prints what a rate costs.
    #[arg(long, default_value_t = 0.0, value_parser = crate::ope::explore_rate)]
    explore: f64,
    /// Cold start: with --explore, a catalog model with fewer outcomes than this (those the router artifact was fitted on plus those reported since start) gets half the exploring draws, shared with the other cold models. 0 = off.
    #[arg(long, default_value_t = 0)]
    explore_min_outcomes: u64,
    /// Serve beyond loopback without TLS and a bearer token (gRPC or HTTP), or with --metrics-listen beyond loopback (refused otherwise).
    #[arg(long)]
    insecure: bool,
    /// A candidate router artifact to load beside the live one (docs/ROLLOUT.md), checked as --router is. Promote it with SIGUSR1 or Admin.Promote, drop it with SIGUSR2 or Admin.Abort.
    #[arg(long)]
    candidate_router: Option<PathBuf>,
    /// How the candidate takes part: `shadow` (it decides too, logged, not acted on) or `canary:SHARE` (it decides a stable SHARE of traffic in (0, 1], by tenant, else by request).
    #[arg(long, requires = "candidate_router", default_value = "shadow")]
    rollout: String,
    /// Per-tenant policies (TOML; docs/ROLLOUT.md, "Per-tenant policies"): defaults for target or lambda, allowed models, exploration rate, spend budgets. Re-read on SIGHUP or Admin.Reload.
    #[arg(long)]
    tenants: Option<PathBuf>,
    /// Seconds between syncs of the per-tenant spend counters with the store: each replica counts its own spend at once and sees the other replicas' (on a shared PostgreSQL store) at most this late, so a tenant may overshoot its budget by what the other replicas spend in one interval.
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    spend_sync: f64,
    #[command(flatten)]
    model: ModelArgs,
}

/// A duration in seconds: finite, > 0 and at most a day.
fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!("{s} must be a number of seconds in (0, 86400]"))
    }
}

/// [`seconds`], or 0 for "off".
fn seconds_or_zero(s: &str) -> Result<f64, String> {
    if s.trim() == "0" {
        return Ok(0.0);
    }
    seconds(s)
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let classifier = load_classifier(&args.model)?;
    let dir = args.model.open_dir()?;
    let encoder_id = embed_cache::encoder_id(classifier.encoder(), &dir.weights_sha256);
    // What actually runs: a requested bf16/int8 falls back to f32 (with a
    // warning) on CPUs without the instructions.
    tracing::info!(
        encoder = %encoder_id,
        precision = classifier.encoder().precision(),
        "encoder loaded"
    );
    let (store, store_shown) = open_store(args.store.as_deref())?;
    let catalog = paths::resolve(&args.catalog);
    let router = match args.router.as_str() {
        "none" => None,
        p => Some(paths::resolve(std::path::Path::new(p))),
    };
    // What a new user needs to see first: which files are in play.
    eprintln!(
        "pointsman: catalog {}, router {}, store {}",
        catalog.display(),
        router.as_deref().map_or_else(
            || "none (classify-only: Route answers FAILED_PRECONDITION)".to_string(),
            |p| p.display().to_string()
        ),
        store_shown
    );
    // A token that is set but blank must not turn auth off silently.
    let auth_token = match &args.auth_token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("--auth-token-file {}", p.display()))?
                .trim()
                .to_string();
            anyhow::ensure!(
                !t.is_empty(),
                "--auth-token-file {}: the file is empty (or only white space)",
                p.display()
            );
            Some(t)
        }
        None => match std::env::var("POINTSMAN_AUTH_TOKEN") {
            Err(std::env::VarError::NotPresent) => None,
            Err(e) => anyhow::bail!("POINTSMAN_AUTH_TOKEN: {e}"),
            Ok(t) => {
                let t = t.trim().to_string();
                anyhow::ensure!(
                    !t.is_empty(),
                    "POINTSMAN_AUTH_TOKEN is set but blank; unset it to run without auth, or set a token"
                );
                Some(t)
            }
        },
    };
    if let Some(t) = &auth_token {
        anyhow::ensure!(
            t.chars().all(|c| c.is_ascii_graphic()),
            "the bearer token must be printable ASCII without spaces (it travels in an HTTP header)"
        );
    }
    let listeners = Listeners {
        grpc: args.listen,
        http: args.http_listen,
        metrics: args.metrics_listen,
        tls: args.tls_cert.is_some(),
        auth_token: auth_token.is_some(),
    };
    if let Some(what) = listeners.open() {
        anyhow::ensure!(
            args.insecure,
            "{what}; refusing to start. Add them, listen on 127.0.0.1, or pass --insecure to accept the risk"
        );
        tracing::warn!("{what}; serving anyway (--insecure)");
    }
    if let Some(c) = &args.candidate_router {
        eprintln!(
            "pointsman: candidate router {} ({}; docs/ROLLOUT.md: SIGUSR1 promotes, SIGUSR2 aborts)",
            c.display(),
            args.rollout
        );
    }
    if let Some(t) = &args.tenants {
        eprintln!("pointsman: tenants {}", t.display());
    }
    let upstreams = match &args.upstreams {
        None => None,
        Some(p) => {
            let u = pointsman_upstream::Upstreams::load(&paths::resolve(p))?;
            eprintln!(
                "pointsman: upstreams {} for {}",
                p.display(),
                u.models().join(", ")
            );
            Some(u)
        }
    };
    let config = ServeConfig {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        batch: BatchConfig {
            max_batch: args.max_batch.max(1),
            max_wait: Duration::from_millis(args.max_wait_ms),
            queue_capacity: args.queue_capacity.max(1),
            prompt_cache: args.prompt_cache,
        },
        limits: Limits {
            max_prompt_bytes: args.max_prompt_bytes,
            max_batch_request: args.max_batch_request,
            default_output_tokens: args.output_tokens.max(1),
            store_prompts: args.store_prompts,
            explore: Exploration {
                rate: args.explore,
                min_outcomes: args.explore_min_outcomes,
                ..Exploration::default()
            },
        },
        catalog,
        router,
        tls: args.tls_cert.zip(args.tls_key),
        auth_token,
        net: NetLimits {
            drain_timeout: Duration::from_secs_f64(args.drain_timeout),
            max_connections: args.max_connections.max(1),
            idle_timeout: Duration::from_secs_f64(args.idle_timeout),
            request_timeout: Duration::from_secs_f64(args.request_timeout),
            max_concurrent_streams: args.max_concurrent_streams.max(1),
            ..NetLimits::default()
        },
        http: args
            .http_listen
            .map(|listen| HttpConfig { listen, upstreams }),
        publish_poll: (args.publish_poll > 0.0).then(|| Duration::from_secs_f64(args.publish_poll)),
        tenants: args.tenants.as_deref().map(paths::resolve),
        spend_sync: Duration::from_secs_f64(args.spend_sync),
        candidate: match &args.candidate_router {
            None => None,
            Some(p) => Some((
                paths::resolve(p),
                args.rollout
                    .parse::<RolloutMode>()
                    .map_err(|e| anyhow::anyhow!("--rollout: {e}"))?,
            )),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stopped = runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let (rollout_tx, rollout_rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    Some(()) = usr1.recv() => RolloutSignal::Promote,
                    Some(()) = usr2.recv() => RolloutSignal::Abort,
                    else => break,
                };
                tracing::info!(signal = sig.signal_name(), action = ?sig, "rollout signal");
                let _ = rollout_tx.try_send(sig);
            }
        });
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the catalog and router artifact");
                let _ = reload_tx.try_send(());
            }
        });
        // Counts SIGTERM/SIGINT: the first starts the drain, the second ends it.
        let (signals_tx, signals) = tokio::sync::watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM"),
                    _ = int.recv() => tracing::info!("SIGINT"),
                }
                signals_tx.send_modify(|n| *n += 1);
            }
        });
        let mut first = signals.clone();
        let shutdown = async move {
            let _ = first.wait_for(|n| *n >= 1).await;
        };
        let mut second = signals;
        let force = async move {
            let _ = second.wait_for(|n| *n >= 2).await;
        };
        Serve::new(config, classifier, encoder_id, store)
            .shutdown(shutdown)
            .force(force)
            .reload(reload_rx)
            .rollout_signals(rollout_rx)
            .on_bound(|bound| {
                // One JSON line on stdout so scripts and tests learn the ports (useful with port 0).
                println!(
                    "{}",
                    serde_json::to_string(&bound).expect("addresses serialise")
                );
                eprintln!("pointsman: serving gRPC on {}", bound.grpc);
                if let Some(http) = bound.http {
                    eprintln!("pointsman: serving HTTP on {http}");
                }
            })
            .run()
            .await
    })?;
    match stopped {
        Stopped::Drained => Ok(ExitCode::SUCCESS),
        cut => {
            // Connection tasks and store writes still running are abandoned
            // (an unacknowledged write is either committed or rolled back
            // by SQLite); the encoder thread ends with the process.
            runtime.shutdown_timeout(Duration::from_millis(500));
            eprintln!("pointsman: drain cut short ({cut:?}); connections closed");
            Ok(if cut == Stopped::Forced {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Opens `--store` (default: [`paths::default_store`]): a PostgreSQL URL,
/// or a SQLite file created with its folder. Returns the store and how to
/// show it (a URL without its password).
fn open_store(store: Option<&str>) -> anyhow::Result<(Arc<dyn OutcomeStore>, String)> {
    if let Some(url) = store.filter(|s| pointsman_store::is_postgres_url(s)) {
        let shown = pointsman_store::redact_url(url);
        let store = pointsman_store::open_store(url).with_context(|| format!("--store {shown}"))?;
        return Ok((store, shown));
    }
    let store_path = match store {
        Some(p) => PathBuf::from(p),
        None => paths::default_store()?,
    };
    if let Some(parent) = store_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| {
            format!(
                "--store {}: creating {}",
                store_path.display(),
                parent.display()
            )
        })?;
    }
    if std::fs::metadata(&store_path).is_ok_and(|m| m.len() == 0) {
        // SQLite treats an empty file as a new database; if it held data it
        // was truncated, and the operator must hear of it.
        tracing::warn!(store = %store_path.display(), "the store file is empty (0 bytes): starting a new store");
        eprintln!(
            "pointsman: warning: store {} is an empty file (0 bytes); starting a new store. If it held decisions, it was truncated: restore it from a backup.",
            store_path.display()
        );
    }
    let store = Arc::new(SqliteStore::open(&store_path)?);
    Ok((store, store_path.display().to_string()))
}
