//! The routing state (catalog, success model, versions), swapped atomically
//! on reload: a request loads one `Arc<RoutingState>` at its start and uses
//! it to the end, so a swap never fails a request in flight.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use pointsman_router::{Catalog, SuccessModel};
use sha2::{Digest, Sha256};

use crate::core::Versions;

/// What routing reads: one consistent snapshot.
#[derive(Debug)]
pub struct RoutingState {
    pub catalog: Catalog,
    /// None until a router artifact is configured and loaded; Route answers
    /// FAILED_PRECONDITION meanwhile.
    pub success: Option<SuccessModel>,
    pub versions: Versions,
}

/// Where the state comes from and how to check it.
#[derive(Debug, Clone)]
pub struct StateSource {
    pub catalog: PathBuf,
    /// The router artifact (JSON written by `pointsman train router`).
    pub router: Option<PathBuf>,
    /// The heads' version, reported in `Versions.heads`.
    pub heads_version: String,
    /// The encoder's embedding dimension; artifacts for another are refused.
    pub embedding_dim: usize,
    /// The encoder's id (`embed_cache::encoder_id`); artifacts fitted on
    /// another encoder's embeddings are refused.
    pub encoder_id: String,
}

/// The current state, the one before it, and how to reload.
pub struct StateHolder {
    current: ArcSwap<RoutingState>,
    previous: Mutex<Option<Arc<RoutingState>>>,
    source: StateSource,
    generation: AtomicU64,
}

impl StateHolder {
    /// Loads the first state; fails with a message naming the bad file.
    pub fn load(source: StateSource) -> anyhow::Result<StateHolder> {
        let first = read_state(&source, 1)?;
        Ok(StateHolder {
            current: ArcSwap::from_pointee(first),
            previous: Mutex::new(None),
            source,
            generation: AtomicU64::new(1),
        })
    }

    /// The state to use for one request.
    pub fn snapshot(&self) -> Arc<RoutingState> {
        self.current.load_full()
    }

    /// Re-reads the files and swaps them in; on error the current state stays.
    pub fn reload(&self) -> anyhow::Result<Arc<RoutingState>> {
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        // Serialised by the `previous` lock, so load-then-store is safe.
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let next = Arc::new(read_state(&self.source, generation)?);
        self.generation.store(generation, Ordering::SeqCst);
        let old = self.current.swap(next.clone());
        *previous = Some(old);
        Ok(next)
    }

    /// Validates a router artifact published in the store (and its
    /// catalog, else the catalog file this server was started with) and
    /// swaps it in like a reload; on error the current state stays.
    /// `label` names it in errors and starts its version string
    /// (`store-v3` gives `router_artifact` `store-v3@<sha>`).
    pub fn install(
        &self,
        label: &str,
        router: &[u8],
        catalog: Option<&[u8]>,
    ) -> anyhow::Result<Arc<RoutingState>> {
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let file_catalog;
        let catalog = match catalog {
            Some(c) => (c, format!("{label} catalog")),
            None => {
                file_catalog = read(&self.source.catalog)?;
                (
                    file_catalog.as_slice(),
                    self.source.catalog.display().to_string(),
                )
            }
        };
        let next = Arc::new(build_state(
            &self.source,
            (catalog.0, &catalog.1),
            Some((router, &format!("{label} router artifact"), label)),
            generation,
        )?);
        self.generation.store(generation, Ordering::SeqCst);
        let old = self.current.swap(next.clone());
        *previous = Some(old);
        Ok(next)
    }

    /// Swaps back to the state before the last reload (a second rollback
    /// undoes the first). Fails if there has been no reload.
    pub fn rollback(&self) -> anyhow::Result<Arc<RoutingState>> {
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let Some(back) = previous.take() else {
            anyhow::bail!("nothing to roll back to: no reload since start");
        };
        let old = self.current.swap(back.clone());
        *previous = Some(old);
        Ok(back)
    }
}

fn short_sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))[..16].to_string()
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn read_state(source: &StateSource, generation: u64) -> anyhow::Result<RoutingState> {
    let catalog = read(&source.catalog)?;
    let router = match &source.router {
        None => None,
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((read(path)?, path.display().to_string(), name))
        }
    };
    build_state(
        source,
        (&catalog, &source.catalog.display().to_string()),
        router
            .as_ref()
            .map(|(b, shown, name)| (b.as_slice(), shown.as_str(), name.as_str())),
        generation,
    )
}

/// A state from bytes: `catalog` is (bytes, where they came from), and
/// `router` (bytes, where from, the name its version string starts with).
/// Errors name where the bad bytes came from.
fn build_state(
    source: &StateSource,
    (bytes, catalog_from): (&[u8], &str),
    router: Option<(&[u8], &str, &str)>,
    generation: u64,
) -> anyhow::Result<RoutingState> {
    let text = std::str::from_utf8(bytes).map_err(|e| anyhow::anyhow!("{catalog_from}: {e}"))?;
    let catalog =
        Catalog::from_toml_str(text).map_err(|e| anyhow::anyhow!("{catalog_from}: {e}"))?;
    let (success, router_version) = match router {
        None => (None, String::new()),
        Some((bytes, from, name)) => {
            let text = std::str::from_utf8(bytes).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
            let model =
                SuccessModel::from_json(text).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
            if model.dim != source.embedding_dim {
                anyhow::bail!(
                    "{from}: fitted on {}-dimensional embeddings but the encoder gives {}; retrain with `pointsman train router`",
                    model.dim,
                    source.embedding_dim
                );
            }
            if !model.encoder_id.is_empty() && model.encoder_id != source.encoder_id {
                anyhow::bail!(
                    "{from}: fitted on embeddings of encoder {}, but this server's encoder is {}; retrain with `pointsman train router`",
                    model.encoder_id,
                    source.encoder_id
                );
            }
            (Some(model), format!("{name}@{}", short_sha(bytes)))
        }
    };
    Ok(RoutingState {
        catalog,
        success,
        versions: Versions {
            catalog: short_sha(bytes),
            router_artifact: router_version,
            heads: source.heads_version.clone(),
            generation,
        },
    })
}
