//! Default file locations, resolved so the binary works from the repository
//! root or from anywhere when it lives in the repository's target/ folder.

use std::path::{Path, PathBuf};

pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";
pub const DEFAULT_HEADS: &str = "models/heads/task-difficulty.safetensors";
pub const DEFAULT_ROUTER: &str = "models/router/routerbench.json";

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
