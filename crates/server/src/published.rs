//! Fleet-wide router artifacts: every replica polls the store for the
//! active published version (`pointsman store publish` / `store
//! activate`) and swaps it in through the same validation as a reload.
//! A version that fails validation is not served: the replica keeps what
//! it has, logs why and counts it (`pointsman_published_total{result}`),
//! and tries again only when the active version changes.

use std::sync::Arc;
use std::time::Duration;

use crate::core::Core;

/// What the poller remembers between polls: the activation it last acted
/// on (each publish and rollback is a new one).
#[derive(Debug, Default)]
pub struct Poller {
    seen: Option<i64>,
}

impl Poller {
    /// Polls once: if the store's active version changed since the last
    /// poll, loads it and swaps it in. Returns the version now served
    /// from the store, if the swap happened.
    pub async fn poll(&mut self, core: &Arc<Core>) -> Option<i64> {
        let active = match store_call(core, |s| s.active_artifact()).await {
            Ok(Ok(a)) => a?,
            Ok(Err(e)) => return failed(core, "store", None, &e.to_string()),
            Err(e) => return failed(core, "store", None, &e.to_string()),
        };
        if self.seen == Some(active.seq) {
            return None;
        }
        self.seen = Some(active.seq);
        let version = active.version;
        let loaded = match store_call(core, move |s| s.load_artifact(version)).await {
            Ok(Ok(Some(a))) => a,
            Ok(Ok(None)) => {
                return failed(core, "store", Some(version), "the version is gone");
            }
            Ok(Err(e)) => return failed(core, "store", Some(version), &e.to_string()),
            Err(e) => return failed(core, "store", Some(version), &e.to_string()),
        };
        let label = format!("store-v{version}");
        let c = core.clone();
        let swapped = tokio::task::spawn_blocking(move || {
            c.state
                .install(&label, &loaded.router, loaded.catalog.as_deref())
        })
        .await;
        match swapped {
            Ok(Ok(s)) => {
                core.metrics.reloads.with_label_values(&["publish"]).inc();
                core.metrics.published.with_label_values(&["swapped"]).inc();
                core.metrics.published_version.set(version);
                core.metrics.generation.set(s.versions.generation as f64);
                tracing::info!(version, router = %s.versions.router_artifact, catalog = %s.versions.catalog, generation = s.versions.generation, "published artifact swapped in");
                Some(version)
            }
            Ok(Err(e)) => failed(core, "invalid", Some(version), &format!("{e:#}")),
            Err(e) => failed(core, "invalid", Some(version), &e.to_string()),
        }
    }
}

/// A store call on the blocking pool outside `Core::store_work`'s slots:
/// the poller makes one at a time, and must neither wait behind requests
/// nor take a slot a request would then be refused for.
async fn store_call<T: Send + 'static>(
    core: &Core,
    work: impl FnOnce(&dyn pointsman_store::OutcomeStore) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let store = core.store.clone();
    tokio::task::spawn_blocking(move || work(store.as_ref())).await
}

fn failed(core: &Core, result: &str, version: Option<i64>, why: &str) -> Option<i64> {
    core.metrics.published.with_label_values(&[result]).inc();
    tracing::warn!(?version, result, error = %why, "published artifact not swapped in; serving the current state");
    None
}

/// Polls every `every` until the task is dropped.
pub async fn poll_forever(core: Arc<Core>, mut poller: Poller, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        poller.poll(&core).await;
    }
}
