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
    /// The router artifact file this state was read from: the next reload
    /// re-reads it (a promoted candidate's path after a promote; the one
    /// before after a rollback).
    pub router_path: Option<PathBuf>,
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
        self.reload_checked(|_| Ok(()))
    }

    /// [`StateHolder::reload`], swapping only if `check` accepts the new
    /// state (e.g. the tenants file against the new catalog).
    pub fn reload_checked(
        &self,
        check: impl FnOnce(&RoutingState) -> anyhow::Result<()>,
    ) -> anyhow::Result<Arc<RoutingState>> {
        self.swap_in(None, check)
    }

    /// Makes the artifact at `router` live (a rollout's promote): the
    /// catalog and that artifact are read as a reload reads them, swapped
    /// in atomically, and later reloads re-read `router`. Refused, with
    /// the current state kept, if the file's version is not `expect`
    /// (it changed on disk since it was loaded as the candidate).
    pub fn promote(&self, router: &Path, expect: &str) -> anyhow::Result<Arc<RoutingState>> {
        self.swap_in(Some(router.to_path_buf()), |next| {
            anyhow::ensure!(
                next.versions.router_artifact == expect,
                "{}: is now {}, not the candidate {expect} that was loaded; load it again as the candidate first",
                router.display(),
                next.versions.router_artifact
            );
            Ok(())
        })
    }

    /// The checks a router artifact must pass to be served (dimension,
    /// encoder), and its version; for a rollout candidate.
    pub fn read_artifact(&self, path: &Path) -> anyhow::Result<(SuccessModel, String)> {
        read_artifact(&self.source, path)
    }

    /// Reads the catalog and the router artifact (`promote_to`, else the
    /// current state's), checks, swaps.
    fn swap_in(
        &self,
        promote_to: Option<PathBuf>,
        check: impl FnOnce(&RoutingState) -> anyhow::Result<()>,
    ) -> anyhow::Result<Arc<RoutingState>> {
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let router = promote_to.or_else(|| self.current.load().router_path.clone());
        // Serialised by the `previous` lock, so load-then-store is safe.
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let source = StateSource {
            router,
            ..self.source.clone()
        };
        let next = Arc::new(read_state(&source, generation)?);
        check(&next)?;
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
        // A later SIGHUP reload re-reads the files, as before the publish.
        let router_path = self.current.load().router_path.clone();
        let next = Arc::new(build_state(
            &self.source,
            (catalog.0, &catalog.1),
            Some((router, &format!("{label} router artifact"), label)),
            generation,
            router_path,
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
        Some(path) => Some((read(path)?, path.display().to_string(), file_name(path))),
    };
    build_state(
        source,
        (&catalog, &source.catalog.display().to_string()),
        router
            .as_ref()
            .map(|(b, shown, name)| (b.as_slice(), shown.as_str(), name.as_str())),
        generation,
        source.router.clone(),
    )
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A state from bytes: `catalog` is (bytes, where they came from), and
/// `router` (bytes, where from, the name its version string starts with).
/// Errors name where the bad bytes came from.
fn build_state(
    source: &StateSource,
    (bytes, catalog_from): (&[u8], &str),
    router: Option<(&[u8], &str, &str)>,
    generation: u64,
    router_path: Option<PathBuf>,
) -> anyhow::Result<RoutingState> {
    let text = std::str::from_utf8(bytes).map_err(|e| anyhow::anyhow!("{catalog_from}: {e}"))?;
    let catalog =
        Catalog::from_toml_str(text).map_err(|e| anyhow::anyhow!("{catalog_from}: {e}"))?;
    let (success, router_version) = match router {
        None => (None, String::new()),
        Some((bytes, from, name)) => {
            let (model, version) = check_artifact(source, bytes, from, name)?;
            // Served anyway: the policy works, τ is only approximate.
            if let Some(why) = model.target_table_mismatch(&catalog.names()) {
                tracing::warn!(artifact = %version, catalog = %catalog_from, "{why}");
            }
            (Some(model), version)
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
        router_path,
    })
}

/// Reads and checks one router artifact: (the model, `file@sha256 prefix`).
fn read_artifact(source: &StateSource, path: &Path) -> anyhow::Result<(SuccessModel, String)> {
    let bytes = read(path)?;
    check_artifact(
        source,
        &bytes,
        &path.display().to_string(),
        &file_name(path),
    )
}

/// Parses and checks a router artifact's bytes (`from` names where they
/// came from in errors): (the model, `name@sha256 prefix`).
fn check_artifact(
    source: &StateSource,
    bytes: &[u8],
    from: &str,
    name: &str,
) -> anyhow::Result<(SuccessModel, String)> {
    let text = std::str::from_utf8(bytes).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
    let model = SuccessModel::from_json(text).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
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
    Ok((model, format!("{name}@{}", short_sha(bytes))))
}
