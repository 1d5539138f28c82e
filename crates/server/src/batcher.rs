//! Dynamic batching: concurrent requests share encoder passes.
//!
//! Requests go into a bounded queue; one dedicated OS thread (the encoder is
//! CPU-bound, so it never runs on the async runtime) takes up to
//! `max_batch` of them, waiting at most `max_wait` after the first for
//! more, runs one `embed_and_predict` over the lot and answers each through
//! its own channel. A full queue is refused at once ([`ServerError::Overloaded`]);
//! a job whose deadline passed while queued is answered
//! [`ServerError::DeadlineExceeded`] without spending the encoder on it.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_classifier::{Classifier, Embedded};
use tokio::sync::oneshot;

use crate::error::ServerError;
use crate::metrics::Metrics;

/// Queue and batch limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most prompts in one encoder pass (>= 1).
    pub max_batch: usize,
    /// Longest the first request of a batch waits for company.
    pub max_wait: Duration,
    /// Most requests waiting for the encoder; one more is refused.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 32,
            max_wait: Duration::from_millis(5),
            queue_capacity: 256,
        }
    }
}

struct Job {
    prompt: String,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Embedded, ServerError>>,
}

/// The handle requests use; cheap to clone. The encoder thread exits once
/// every handle is dropped and the queue is empty.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl Batcher {
    /// Starts the encoder thread. Join the handle to wait until every
    /// queued job has been answered (after dropping every `Batcher`).
    pub fn start(
        classifier: Arc<Classifier>,
        config: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> (Batcher, JoinHandle<()>) {
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let m = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("switchyard-encoder".into())
            .spawn(move || worker(classifier, config, rx, m))
            .expect("spawn the encoder thread");
        (
            Batcher {
                tx,
                capacity: config.queue_capacity.max(1),
                metrics,
            },
            handle,
        )
    }

    /// Embeds and classifies one prompt, sharing an encoder pass with
    /// whatever else is queued.
    pub async fn classify(
        &self,
        prompt: String,
        deadline: Option<Instant>,
    ) -> Result<Embedded, ServerError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job {
            prompt,
            deadline,
            reply,
        })?;
        wait(rx, deadline).await
    }

    /// Queues many prompts at once (one job each); each answer comes back
    /// in input order. Prompts that do not fit in the queue are refused
    /// individually.
    pub async fn classify_many(
        &self,
        prompts: Vec<String>,
        deadline: Option<Instant>,
    ) -> Vec<Result<Embedded, ServerError>> {
        let mut waits = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let (reply, rx) = oneshot::channel();
            waits.push(
                self.submit(Job {
                    prompt,
                    deadline,
                    reply,
                })
                .map(|_| rx),
            );
        }
        let mut out = Vec::with_capacity(waits.len());
        for w in waits {
            out.push(match w {
                Ok(rx) => wait(rx, deadline).await,
                Err(e) => Err(e),
            });
        }
        out
    }

    fn submit(&self, job: Job) -> Result<(), ServerError> {
        // Count before sending so the worker's decrement never runs first.
        self.metrics.queue_depth.inc();
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_depth.dec();
                self.metrics.overloaded.inc();
                Err(ServerError::Overloaded {
                    capacity: self.capacity,
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.dec();
                Err(ServerError::ShuttingDown)
            }
        }
    }
}

async fn wait(
    rx: oneshot::Receiver<Result<Embedded, ServerError>>,
    deadline: Option<Instant>,
) -> Result<Embedded, ServerError> {
    let answer = async {
        rx.await.unwrap_or_else(|_| {
            Err(ServerError::Internal(
                "the encoder thread dropped a request".into(),
            ))
        })
    };
    match deadline {
        None => answer.await,
        Some(d) => tokio::time::timeout_at(d.into(), answer)
            .await
            .unwrap_or(Err(ServerError::DeadlineExceeded)),
    }
}

fn worker(
    classifier: Arc<Classifier>,
    config: BatchConfig,
    rx: Receiver<Job>,
    metrics: Arc<Metrics>,
) {
    let max_batch = config.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        metrics.queue_depth.dec();
        let mut jobs = vec![first];
        let until = Instant::now() + config.max_wait;
        while jobs.len() < max_batch {
            let left = until.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(left)
            };
            match next {
                Ok(job) => {
                    metrics.queue_depth.dec();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let (live, expired): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .filter(|j| !j.reply.is_closed())
            .partition(|j| j.deadline.is_none_or(|d| d > now));
        for j in expired {
            let _ = j.reply.send(Err(ServerError::DeadlineExceeded));
        }
        if live.is_empty() {
            continue;
        }
        metrics.batch_size.observe(live.len() as f64);
        let texts: Vec<&str> = live.iter().map(|j| j.prompt.as_str()).collect();
        let started = Instant::now();
        // A panic in the encoder must not take the server down: answer this
        // batch with an internal error and keep serving.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            classifier.embed_and_predict(&texts, max_batch)
        }));
        metrics
            .encoder_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(embedded)) => {
                for (j, e) in live.into_iter().zip(embedded) {
                    let _ = j.reply.send(Ok(e));
                }
            }
            Ok(Err(e)) => {
                let message = e.to_string();
                for j in live {
                    let _ = j
                        .reply
                        .send(Err(ServerError::Internal(format!("classifier: {message}"))));
                }
            }
            Err(_) => {
                tracing::error!("the encoder panicked on a batch of {}", texts.len());
                for j in live {
                    let _ = j.reply.send(Err(ServerError::Internal(
                        "the encoder failed on this batch".into(),
                    )));
                }
            }
        }
    }
    tracing::info!("encoder thread: queue closed and drained");
}
