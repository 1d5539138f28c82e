//! Default file locations, resolved so the binary works from the repository
//! root or from anywhere when it lives in the repository's target/ folder.

use std::path::{Path, PathBuf};

pub const DEFAULT_MODEL_DIR: &str = "models/all-MiniLM-L6-v2";
pub const DEFAULT_HEADS: &str = "models/heads/task-difficulty.safetensors";

/// `path` as given if it exists or is absolute; else the same relative path
/// under the repository that holds this executable (target/<profile>/switchyard).
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
