//! Dynamic batching: concurrent requests share encoder passes.
//!
//! Requests go into a bounded queue; one dedicated OS thread (the encoder is
//! CPU-bound, so it never runs on the async runtime) takes up to
//! `max_batch` of them, waiting at most `max_wait` after the first for
//! more, runs one `embed_and_predict` over the lot and answers each through
//! its own channel. A full queue is refused at once ([`ServerError::Overloaded`]);
//! a job whose deadline passed while queued is answered
//! [`ServerError::DeadlineExceeded`] without spending the encoder on it.
//!
//! In front of the queue sits the prompt cache ([`PromptCache`]): a prompt
//! whose encoder output is cached is answered at once and never queued; the
//! encoder thread stores each Ok answer before replying.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pointsman_classifier::{Classifier, Embedded};
use tokio::sync::oneshot;

use crate::error::ServerError;
use crate::metrics::Metrics;
use crate::prompt_cache::{PromptCache, PromptKey};

/// Queue, batch and prompt-cache limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    /// Most prompts in one encoder pass (>= 1).
    pub max_batch: usize,
    /// Longest the first request of a batch waits for company.
    pub max_wait: Duration,
    /// Most requests waiting for the encoder; one more is refused.
    pub queue_capacity: usize,
    /// Most prompts whose encoder output is kept for repeats (0 = no cache).
    pub prompt_cache: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 32,
            // Requests that arrive while the encoder is busy queue up and
            // share the next pass anyway; waiting for more only added
            // latency at 1 client and bought no throughput at 16 or 64
            // (docs/PERFORMANCE.md, "Route over loopback").
            max_wait: Duration::ZERO,
            queue_capacity: 256,
            prompt_cache: 4096,
        }
    }
}

struct Job {
    prompt: String,
    /// Where to cache the answer; None when the cache is off.
    key: Option<PromptKey>,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Embedded, ServerError>>,
}

/// The handle requests use; cheap to clone. The encoder thread exits once
/// every handle is dropped and the queue is empty.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    capacity: usize,
    /// See [`Batcher::share`].
    share: usize,
    metrics: Arc<Metrics>,
    cache: Arc<PromptCache>,
}

/// What the prompt cache said about a prompt.
enum Lookup {
    Hit(Embedded),
    /// Queue it; the key to cache its answer under (None: cache off).
    Miss(Option<PromptKey>),
}

/// One prompt of `classify_many`: answered from the cache or refused at
/// once, or waiting for the encoder.
enum Pending {
    Done(Result<Embedded, ServerError>),
    Queued(oneshot::Receiver<Result<Embedded, ServerError>>),
}

impl Batcher {
    /// Starts the encoder thread. Join the handle to wait until every
    /// queued job has been answered (after dropping every `Batcher`).
    pub fn start(
        classifier: Arc<Classifier>,
        config: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> (Batcher, JoinHandle<()>) {
        let max_batch = config.max_batch.max(1);
        Batcher::start_with(
            move |texts: &[&str]| classifier.embed_and_predict(texts, max_batch),
            config,
            metrics,
        )
    }

    /// [`Batcher::start`] with any encoder function (tests use fakes).
    fn start_with(
        encode: impl Fn(&[&str]) -> pointsman_classifier::Result<Vec<Embedded>> + Send + 'static,
        config: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> (Batcher, JoinHandle<()>) {
        let (tx, rx) = sync_channel(config.queue_capacity.max(1));
        let cache = Arc::new(PromptCache::new(config.prompt_cache));
        let (m, c) = (metrics.clone(), cache.clone());
        let handle = std::thread::Builder::new()
            .name("pointsman-encoder".into())
            .spawn(move || worker(encode, config, rx, m, c))
            .expect("spawn the encoder thread");
        (
            Batcher {
                tx,
                capacity: config.queue_capacity.max(1),
                share: config.max_batch.min(config.queue_capacity / 2).max(1),
                metrics,
                cache,
            },
            handle,
        )
    }

    /// Embeds and classifies one prompt, sharing an encoder pass with
    /// whatever else is queued; a prompt in the cache is answered at once.
    pub async fn classify(
        &self,
        prompt: String,
        deadline: Option<Instant>,
    ) -> Result<Embedded, ServerError> {
        let key = match self.lookup(&prompt) {
            Lookup::Hit(e) => return Ok(e),
            Lookup::Miss(key) => key,
        };
        let (reply, rx) = oneshot::channel();
        self.submit(Job {
            prompt,
            key,
            deadline,
            reply,
        })?;
        wait(rx, deadline).await
    }

    /// Classifies many prompts (cached ones answered at once); each answer
    /// comes back in input order. Fair to other callers: at most
    /// [`Batcher::share`] of them wait in the queue at a time, the next
    /// wave going in when the last is answered, so requests that arrive
    /// meanwhile share the next pass instead of waiting behind the whole
    /// batch or finding the queue full. A prompt that does not fit is
    /// refused on its own.
    pub async fn classify_many(
        &self,
        prompts: Vec<String>,
        deadline: Option<Instant>,
    ) -> Vec<Result<Embedded, ServerError>> {
        let mut out = Vec::with_capacity(prompts.len());
        let mut prompts = prompts.into_iter().peekable();
        while prompts.peek().is_some() {
            let wave: Vec<String> = prompts.by_ref().take(self.share).collect();
            out.extend(self.classify_wave(wave, deadline).await);
        }
        out
    }

    /// The most prompts one request may have in the queue at once: one
    /// encoder pass, and never more than half the queue.
    pub fn share(&self) -> usize {
        self.share
    }

    async fn classify_wave(
        &self,
        prompts: Vec<String>,
        deadline: Option<Instant>,
    ) -> Vec<Result<Embedded, ServerError>> {
        let mut pending = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let key = match self.lookup(&prompt) {
                Lookup::Hit(e) => {
                    pending.push(Pending::Done(Ok(e)));
                    continue;
                }
                Lookup::Miss(key) => key,
            };
            let (reply, rx) = oneshot::channel();
            pending.push(
                match self.submit(Job {
                    prompt,
                    key,
                    deadline,
                    reply,
                }) {
                    Ok(()) => Pending::Queued(rx),
                    Err(e) => Pending::Done(Err(e)),
                },
            );
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Pending::Queued(rx) => wait(rx, deadline).await,
                Pending::Done(r) => r,
            });
        }
        out
    }

    /// Looks the prompt up in the cache, counting hits and misses (neither
    /// is counted, and nothing is hashed, when the cache is off).
    fn lookup(&self, prompt: &str) -> Lookup {
        if !self.cache.is_enabled() {
            return Lookup::Miss(None);
        }
        let key = PromptCache::key(prompt);
        match self.cache.get(&key) {
            Some(e) => {
                self.metrics.prompt_cache_hits.inc();
                Lookup::Hit(e)
            }
            None => {
                self.metrics.prompt_cache_misses.inc();
                Lookup::Miss(Some(key))
            }
        }
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
    encode: impl Fn(&[&str]) -> pointsman_classifier::Result<Vec<Embedded>>,
    config: BatchConfig,
    rx: Receiver<Job>,
    metrics: Arc<Metrics>,
    cache: Arc<PromptCache>,
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
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| encode(&texts)));
        metrics
            .encoder_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(embedded)) => {
                // Cache before replying, so a client that sends the same
                // prompt again as soon as it has its answer finds it. The
                // clones are made outside the cache's lock; the lock is
                // held only for the list updates, never during a pass.
                let fill: Vec<(PromptKey, Embedded)> = live
                    .iter()
                    .zip(&embedded)
                    .filter_map(|(j, e)| Some((j.key?, e.clone())))
                    .collect();
                if !fill.is_empty() {
                    let held = cache.insert_many(fill);
                    metrics.prompt_cache_entries.set(held as i64);
                }
                for (j, e) in live.into_iter().zip(embedded) {
                    let _ = j.reply.send(Ok(e));
                }
            }
            // One bad prompt must not fail its neighbours: when a pass
            // fails (or panics), each prompt gets a pass of its own and its
            // own answer, a classifier error through ServerError::Classifier
            // (INVALID_ARGUMENT for input it refuses, INTERNAL otherwise).
            // Failures are never cached: a retry gets a fresh pass.
            failed => {
                if failed.is_err() {
                    tracing::error!("the encoder panicked on a batch of {}", texts.len());
                }
                for j in live {
                    let one =
                        std::panic::catch_unwind(AssertUnwindSafe(|| encode(&[j.prompt.as_str()])));
                    let answer = match one {
                        Ok(Ok(mut e)) if e.len() == 1 => {
                            let e = e.pop().expect("one answer");
                            if let Some(key) = j.key {
                                let held = cache.insert_many(vec![(key, e.clone())]);
                                metrics.prompt_cache_entries.set(held as i64);
                            }
                            Ok(e)
                        }
                        Ok(Ok(e)) => Err(ServerError::Internal(format!(
                            "the encoder answered {} results for 1 prompt",
                            e.len()
                        ))),
                        Ok(Err(e)) => Err(ServerError::Classifier(e)),
                        Err(_) => Err(ServerError::Internal(
                            "the encoder failed on this prompt".into(),
                        )),
                    };
                    let _ = j.reply.send(answer);
                }
            }
        }
    }
    tracing::info!("encoder thread: queue closed and drained");
}

#[cfg(test)]
mod tests {
    use super::*;
    use pointsman_classifier::{ClassifierError, Prediction};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// What the fake encoder answers for `prompt`: its task is the prompt.
    fn embedded(prompt: &str) -> Embedded {
        Embedded {
            embedding: vec![prompt.len() as f32, 0.5],
            prediction: Prediction {
                task: prompt.to_string(),
                task_scores: [(prompt.to_string(), 1.0)].into(),
                difficulty: 0.25,
            },
        }
    }

    /// A batcher over a fake encoder that counts the prompts it is given. A
    /// batch holding a prompt starting "error" fails; one starting "panic"
    /// panics.
    struct Fake {
        batcher: Batcher,
        metrics: Arc<Metrics>,
        encoded: Arc<AtomicUsize>,
        thread: JoinHandle<()>,
        rt: tokio::runtime::Runtime,
    }

    impl Fake {
        fn new(prompt_cache: usize) -> Fake {
            let metrics = Arc::new(Metrics::new());
            let encoded = Arc::new(AtomicUsize::new(0));
            let counter = encoded.clone();
            let encode = move |texts: &[&str]| {
                counter.fetch_add(texts.len(), Ordering::SeqCst);
                if texts[0] == "slow" {
                    std::thread::sleep(Duration::from_millis(200));
                }
                if texts.iter().any(|t| t.starts_with("panic")) {
                    panic!("the fake encoder panics on purpose");
                }
                if texts.iter().any(|t| t.starts_with("error")) {
                    return Err(ClassifierError::InvalidInput("fake failure".into()));
                }
                Ok(texts.iter().map(|t| embedded(t)).collect())
            };
            let config = BatchConfig {
                max_batch: 8,
                max_wait: Duration::ZERO,
                queue_capacity: 16,
                prompt_cache,
            };
            let (batcher, thread) = Batcher::start_with(encode, config, metrics.clone());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            Fake {
                batcher,
                metrics,
                encoded,
                thread,
                rt,
            }
        }

        fn classify(&self, prompt: &str) -> Result<Embedded, ServerError> {
            self.rt
                .block_on(self.batcher.classify(prompt.to_string(), None))
        }

        fn classify_many(&self, prompts: &[&str]) -> Vec<Result<Embedded, ServerError>> {
            let prompts = prompts.iter().map(|p| p.to_string()).collect();
            self.rt.block_on(self.batcher.classify_many(prompts, None))
        }

        fn encoded(&self) -> usize {
            self.encoded.load(Ordering::SeqCst)
        }

        fn hits_misses(&self) -> (u64, u64) {
            (
                self.metrics.prompt_cache_hits.get(),
                self.metrics.prompt_cache_misses.get(),
            )
        }

        /// Closes the queue and waits for the encoder thread.
        fn stop(self) {
            drop(self.batcher);
            self.thread.join().unwrap();
        }
    }

    #[test]
    fn a_repeated_prompt_is_answered_from_the_cache_without_an_encoder_pass() {
        let f = Fake::new(8);
        let first = f.classify("hello").unwrap();
        assert_eq!(f.encoded(), 1);
        let second = f.classify("hello").unwrap();
        assert_eq!(f.encoded(), 1, "the repeat never reached the encoder");
        assert_eq!(second.embedding, first.embedding);
        assert_eq!(second.prediction.task, "hello");
        assert_eq!(f.hits_misses(), (1, 1));
        assert_eq!(f.metrics.prompt_cache_entries.get(), 1);
        // Another prompt misses and is encoded.
        assert_eq!(f.classify("hello!").unwrap().prediction.task, "hello!");
        assert_eq!(f.encoded(), 2);
        assert_eq!(f.hits_misses(), (1, 2));
        f.stop();
    }

    #[test]
    fn classify_many_mixes_hits_and_misses_in_input_order() {
        let f = Fake::new(8);
        f.classify("a").unwrap();
        let out: Vec<String> = f
            .classify_many(&["b", "a", "c"])
            .into_iter()
            .map(|r| r.unwrap().prediction.task)
            .collect();
        assert_eq!(out, ["b", "a", "c"]);
        assert_eq!(f.encoded(), 3, "a, then b and c; the second a was a hit");
        assert_eq!(f.hits_misses(), (1, 3));
        // Now all three are cached.
        assert!(f.classify_many(&["c", "b", "a"]).iter().all(|r| r.is_ok()));
        assert_eq!(f.encoded(), 3);
        assert_eq!(f.hits_misses(), (4, 3));
        f.stop();
    }

    #[test]
    fn failures_are_not_cached() {
        let f = Fake::new(8);
        for round in 1..=2 {
            let e = f.classify("error please").unwrap_err();
            assert!(
                matches!(e, ServerError::Classifier(ClassifierError::InvalidInput(_))),
                "{e:?}"
            );
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            // The failed pass, then the prompt's own pass.
            assert_eq!(f.encoded(), 2 * round, "a failed prompt is encoded again");
        }
        for round in 1..=2 {
            let e = f.classify("panic please").unwrap_err();
            assert!(matches!(e, ServerError::Internal(_)), "{e:?}");
            assert_eq!(
                f.encoded(),
                4 + 2 * round,
                "a panicked prompt is encoded again"
            );
        }
        assert_eq!(f.hits_misses(), (0, 4));
        assert_eq!(f.metrics.prompt_cache_entries.get(), 0);
        // The encoder thread survived the panic and still serves.
        f.classify("fine").unwrap();
        f.stop();
    }

    // Defect 7 of issue 13: one bad prompt used to fail its whole pass with
    // INTERNAL. "slow" holds the encoder so the next three share one pass.
    #[test]
    fn one_bad_prompt_fails_alone_and_its_neighbours_are_answered() {
        let f = Fake::new(0);
        let out = f.classify_many(&["slow", "fine one", "error here", "panic here", "fine two"]);
        assert_eq!(out[0].as_ref().unwrap().prediction.task, "slow");
        assert_eq!(out[1].as_ref().unwrap().prediction.task, "fine one");
        assert_eq!(out[4].as_ref().unwrap().prediction.task, "fine two");
        let bad = out[2].as_ref().unwrap_err();
        assert!(
            matches!(
                bad,
                ServerError::Classifier(ClassifierError::InvalidInput(_))
            ),
            "{bad:?}"
        );
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(
            matches!(out[3], Err(ServerError::Internal(_))),
            "{:?}",
            out[3]
        );
        assert!(
            f.metrics.batch_size.get_sample_count() < 5,
            "some prompts shared a pass"
        );
        f.stop();
    }

    // Defect 6 of issue 13: one big batch filled the whole queue, so its own
    // tail and everyone else were refused. Now it queues a share at a time.
    #[test]
    fn a_batch_bigger_than_the_queue_goes_in_waves_and_leaves_room() {
        let f = Fake::new(0);
        assert_eq!(f.batcher.share(), 8);
        let mut prompts = vec!["slow".to_string()];
        prompts.extend((0..40).map(|i| format!("p{i}")));
        let light = f.batcher.clone();
        let (out, alone) = f.rt.block_on(async {
            let big = f.batcher.classify_many(prompts, None);
            let small = async {
                // Arrives while "slow" holds the encoder and the batch's
                // first wave waits.
                tokio::time::sleep(Duration::from_millis(50)).await;
                light.classify("light".into(), None).await
            };
            tokio::join!(big, small)
        });
        assert!(
            out.iter().all(|r| r.is_ok()),
            "{:?}",
            out.iter().find(|r| r.is_err())
        );
        assert_eq!(out[40].as_ref().unwrap().prediction.task, "p39");
        assert_eq!(alone.unwrap().prediction.task, "light");
        assert_eq!(f.metrics.overloaded.get(), 0);
        drop(light); // the encoder thread ends when every handle is gone
        f.stop();
    }

    #[test]
    fn capacity_zero_sends_every_prompt_to_the_encoder() {
        let f = Fake::new(0);
        for n in 1..=3 {
            assert_eq!(f.classify("hello").unwrap().prediction.task, "hello");
            assert_eq!(f.encoded(), n);
        }
        assert!(f
            .classify_many(&["hello", "hello"])
            .iter()
            .all(|r| r.is_ok()));
        assert_eq!(f.encoded(), 5);
        assert_eq!(f.hits_misses(), (0, 0), "a disabled cache counts nothing");
        f.stop();
    }
}
