//! Default file locations, resolved so the binary works from the repository
//! root or from anywhere when it lives in the repository's target/ folder.

use std::path::{Path, PathBuf};

/// The default encoder, its heads and its router change together (each is
/// fitted on the encoder's embeddings and refuses another's). Since
/// 2026-11-29 multilingual-e5-small: ahead of all-MiniLM-L6-v2 on
/// leave-one-source-out and on the non-English sets, and at least 2x
/// PyTorch's speed in int8 (docs/EVALUATION.md, "Which encoder is the
/// default"). MiniLM stays a flag away: `--model-dir`, `--heads`, `--router`
/// with the paths below.
pub const DEFAULT_MODEL_DIR: &str = "models/multilingual-e5-small";
pub const DEFAULT_HEADS: &str = "models/heads-e5/task-difficulty.safetensors";
pub const DEFAULT_ROUTER: &str = "models/router/routerbench-e5.json";

/// all-MiniLM-L6-v2, its heads and router: the default before 2026-11-29,
/// and the base of the LoRA fine-tuning (`train encoder`).
pub const MINILM_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";

/// Where `serve` keeps its outcome store when neither `--store` nor
/// `$POINTSMAN_STORE` says: the XDG state directory, since the store is
/// state that outlives a run but is not configuration.
pub fn default_store() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or_else(|| {
                anyhow::anyhow!("--store: no default (neither $XDG_STATE_HOME nor $HOME is set); pass --store PATH")
            })?;
            PathBuf::from(home).join(".local/state")
        }
    };
    Ok(base.join("pointsman/outcomes.db"))
}

/// `path` as given if it exists or is absolute; else the same relative path
/// under the repository that holds this executable (target/<profile>/pointsman).
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|root| root.join(path)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| path.to_path_buf())
}
