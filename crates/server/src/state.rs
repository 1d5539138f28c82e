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
    let bytes = read(&source.catalog)?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|e| anyhow::anyhow!("{}: {e}", source.catalog.display()))?;
    let catalog = Catalog::from_toml_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", source.catalog.display()))?;
    let (success, router_version) = match &source.router {
        None => (None, String::new()),
        Some(path) => {
            let bytes = read(path)?;
            let text = String::from_utf8(bytes.clone())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let model = SuccessModel::from_json(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if model.dim != source.embedding_dim {
                anyhow::bail!(
                    "{}: fitted on {}-dimensional embeddings but the encoder gives {}; retrain with `pointsman train router`",
                    path.display(),
                    model.dim,
                    source.embedding_dim
                );
            }
            if !model.encoder_id.is_empty() && model.encoder_id != source.encoder_id {
                anyhow::bail!(
                    "{}: fitted on embeddings of encoder {}, but this server's encoder is {}; retrain with `pointsman train router`",
                    path.display(),
                    model.encoder_id,
                    source.encoder_id
                );
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (Some(model), format!("{name}@{}", short_sha(&bytes)))
        }
    };
    Ok(RoutingState {
        catalog,
        success,
        versions: Versions {
            catalog: short_sha(&bytes),
            router_artifact: router_version,
            heads: source.heads_version.clone(),
            generation,
        },
    })
}
