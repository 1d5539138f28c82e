//! Shadow and canary rollout of a candidate router artifact beside the
//! live one (docs/ROLLOUT.md).
//!
//! ```text
//! load candidate ─► shadow (candidate decides too, logged, not acted on)
//!                ─► canary:p (a stable share of traffic decided by it)
//!                ─► promote (it becomes live, like a reload) | abort (dropped)
//! ```
//!
//! The candidate shares the live state's catalog, embedding and heads:
//! only the success model and the policy step run twice.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use pointsman_router::SuccessModel;
use pointsman_store::RolloutEvent;
use sha2::{Digest, Sha256};

use super::decide::now_ms;
use super::Core;
use crate::error::ServerError;

/// How a loaded candidate takes part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RolloutMode {
    /// Every request also gets the candidate's decision, logged in the
    /// decision's `shadow` column; the live artifact decides.
    Shadow,
    /// The candidate decides the requests whose canary point (see
    /// [`canary_point`]) is below `share`, in (0, 1].
    Canary { share: f64 },
}

impl FromStr for RolloutMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "shadow" {
            return Ok(RolloutMode::Shadow);
        }
        let bad = || {
            format!("`{s}` is neither `shadow` nor `canary:SHARE` with SHARE in (0, 1] (e.g. canary:0.1)")
        };
        let share: f64 = s
            .strip_prefix("canary:")
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        if share > 0.0 && share <= 1.0 {
            Ok(RolloutMode::Canary { share })
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for RolloutMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RolloutMode::Shadow => write!(f, "shadow"),
            RolloutMode::Canary { share } => write!(f, "canary:{share}"),
        }
    }
}

/// A rollout action asked for by a Unix signal (`serve`: SIGUSR1
/// promotes, SIGUSR2 aborts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutSignal {
    Promote,
    Abort,
}

impl RolloutSignal {
    pub fn signal_name(self) -> &'static str {
        match self {
            RolloutSignal::Promote => "SIGUSR1",
            RolloutSignal::Abort => "SIGUSR2",
        }
    }
}

/// Which artifact decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// The live artifact (also under shadow).
    Live,
    /// The candidate, under canary.
    Canary,
}

impl Arm {
    /// The `arm` logged in the decision's `versions`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Live => "live",
            Arm::Canary => "canary",
        }
    }

    /// The `artifact` label of the metrics: `live` or `candidate`.
    pub fn artifact_label(self) -> &'static str {
        match self {
            Arm::Live => "live",
            Arm::Canary => "candidate",
        }
    }
}

/// Where a request falls in [0, 1): the first 8 bytes of sha256(key) over
/// 2^64. Stable across processes, replicas and releases (unlike std's
/// hasher), so a tenant is on the same arm on every replica and after a
/// restart, and raising the share only adds tenants to the canary.
pub fn canary_point(key: &str) -> f64 {
    let h = Sha256::digest(key.as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    x as f64 / 18_446_744_073_709_551_616.0
}

/// A candidate router artifact, checked as the live one is at load.
#[derive(Debug)]
pub struct Candidate {
    pub success: SuccessModel,
    /// `file@sha256 prefix`, as `Versions.router_artifact`.
    pub version: String,
    pub path: PathBuf,
}

/// A loaded candidate and its mode: one snapshot per request.
#[derive(Debug)]
pub struct Active {
    pub candidate: Candidate,
    pub mode: RolloutMode,
}

impl Active {
    /// The arm of one request: by tenant when it has one (a tenant's
    /// traffic stays on one arm, so its users see one router), else by
    /// decision id (a fresh random id: a per-request coin).
    pub fn arm(&self, tenant: Option<&str>, decision_id: &str) -> Arm {
        match self.mode {
            RolloutMode::Shadow => Arm::Live,
            RolloutMode::Canary { share } => {
                let key = match tenant {
                    Some(t) => format!("tenant:{t}"),
                    None => format!("decision:{decision_id}"),
                };
                if canary_point(&key) < share {
                    Arm::Canary
                } else {
                    Arm::Live
                }
            }
        }
    }
}

/// The rollout in progress, if any.
#[derive(Default)]
pub struct Rollout {
    active: ArcSwapOption<Active>,
    /// Serialises load, mode, promote and abort.
    ops: Mutex<()>,
}

impl Rollout {
    pub fn snapshot(&self) -> Option<Arc<Active>> {
        self.active.load_full()
    }
}

/// What the Admin rollout calls answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStatus {
    /// The live artifact's version.
    pub live: String,
    /// The candidate's version ("" = none loaded).
    pub candidate: String,
    /// `off`, `shadow` or `canary:SHARE`.
    pub mode: String,
}

/// Who asked for a rollout action and why (recorded in the store).
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub who: String,
    pub why: String,
}

impl Core {
    /// The rollout as it stands.
    pub fn rollout_status(&self) -> RolloutStatus {
        let active = self.rollout.snapshot();
        RolloutStatus {
            live: self.state.snapshot().versions.router_artifact.clone(),
            candidate: active
                .as_ref()
                .map_or_else(String::new, |a| a.candidate.version.clone()),
            mode: active
                .as_ref()
                .map_or_else(|| "off".to_string(), |a| a.mode.to_string()),
        }
    }

    /// Loads `path` as the candidate in `mode`, replacing any candidate
    /// (blocking: reads the file and writes the store).
    pub fn load_candidate(
        &self,
        path: &Path,
        mode: RolloutMode,
        actor: Actor,
    ) -> Result<RolloutStatus, ServerError> {
        let _op = lock(&self.rollout.ops);
        let (success, version) = self
            .state
            .read_artifact(path)
            .map_err(|e| ServerError::invalid("path", format!("{e:#}")))?;
        self.rollout.active.store(Some(Arc::new(Active {
            candidate: Candidate {
                success,
                version,
                path: path.to_path_buf(),
            },
            mode,
        })));
        self.rollout_done("load", actor)
    }

    /// Changes the mode of the loaded candidate.
    pub fn set_rollout_mode(
        &self,
        mode: RolloutMode,
        actor: Actor,
    ) -> Result<RolloutStatus, ServerError> {
        let _op = lock(&self.rollout.ops);
        let active = self.loaded("change the rollout mode")?;
        let (success, version) = self
            .state
            .read_artifact(&active.candidate.path)
            .map_err(|e| ServerError::NotReady(format!("re-reading the candidate: {e:#}")))?;
        if version != active.candidate.version {
            return Err(ServerError::NotReady(format!(
                "{}: is now {version}, not the candidate {} that was loaded; load it again",
                active.candidate.path.display(),
                active.candidate.version
            )));
        }
        self.rollout.active.store(Some(Arc::new(Active {
            candidate: Candidate {
                success,
                version,
                path: active.candidate.path.clone(),
            },
            mode,
        })));
        self.rollout_done("mode", actor)
    }

    /// Makes the candidate live (an atomic swap, as a reload; Rollback
    /// undoes it) and ends the rollout.
    pub fn promote(&self, actor: Actor) -> Result<RolloutStatus, ServerError> {
        let _op = lock(&self.rollout.ops);
        let active = self.loaded("promote")?;
        let from = self.state.snapshot().versions.router_artifact.clone();
        let s = self
            .state
            .promote(&active.candidate.path, &active.candidate.version)
            .map_err(|e| ServerError::NotReady(format!("promote refused: {e:#}")))?;
        self.metrics.reloads.with_label_values(&["promote"]).inc();
        self.metrics.generation.set(s.versions.generation as f64);
        self.rollout.active.store(None);
        self.rollout_event("promote", &from, &active, actor)
    }

    /// Drops the candidate: the live artifact decides everything again.
    pub fn abort(&self, actor: Actor) -> Result<RolloutStatus, ServerError> {
        let _op = lock(&self.rollout.ops);
        let active = self.loaded("abort")?;
        self.rollout.active.store(None);
        let from = self.state.snapshot().versions.router_artifact.clone();
        self.rollout_event("abort", &from, &active, actor)
    }

    fn loaded(&self, what: &str) -> Result<Arc<Active>, ServerError> {
        self.rollout.snapshot().ok_or_else(|| {
            ServerError::NotReady(format!(
                "no candidate router artifact is loaded to {what}: load one first (serve --candidate-router, or Admin.LoadCandidate)"
            ))
        })
    }

    fn rollout_done(&self, action: &str, actor: Actor) -> Result<RolloutStatus, ServerError> {
        let active = self.rollout.snapshot().expect("just stored");
        let from = self.state.snapshot().versions.router_artifact.clone();
        self.rollout_event(action, &from, &active, actor)
    }

    /// Logs, counts and records one rollout action in the store.
    fn rollout_event(
        &self,
        action: &str,
        from: &str,
        active: &Active,
        actor: Actor,
    ) -> Result<RolloutStatus, ServerError> {
        let status = self.rollout_status();
        self.metrics.set_artifacts(&status.live, &status.candidate);
        tracing::info!(
            action,
            from = %from,
            candidate = %active.candidate.version,
            mode = %status.mode,
            who = %actor.who,
            why = %actor.why,
            "rollout"
        );
        let event = RolloutEvent {
            time_ms: now_ms(),
            action: action.to_string(),
            from_version: from.to_string(),
            to_version: active.candidate.version.clone(),
            mode: status.mode.clone(),
            who: actor.who,
            why: actor.why,
        };
        self.store.append_rollout_event(&event).map_err(|e| {
            tracing::error!(action, error = %e, "rollout action done but not recorded in the store");
            ServerError::Internal(format!(
                "{action} done, but recording it in the store failed: {e}"
            ))
        })?;
        Ok(status)
    }
}

fn lock(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        assert_eq!("shadow".parse(), Ok(RolloutMode::Shadow));
        assert_eq!("canary:0.2".parse(), Ok(RolloutMode::Canary { share: 0.2 }));
        assert_eq!(RolloutMode::Canary { share: 0.2 }.to_string(), "canary:0.2");
        for bad in ["canary:0", "canary:1.5", "canary:x", "canary", "live", ""] {
            let e = bad.parse::<RolloutMode>().unwrap_err();
            assert!(e.contains("canary:SHARE"), "{bad}: {e}");
        }
    }

    #[test]
    fn canary_points_are_stable_and_uniform() {
        // Pinned: the point must never change between releases, or a
        // restart would move tenants between arms.
        // sha256("tenant:a") starts 0x17a3...: computed independently with
        // Python's hashlib.
        assert_eq!(canary_point("tenant:a"), 0.09234450202244837);
        let n = 20_000;
        let below = (0..n)
            .filter(|i| canary_point(&format!("tenant:t{i}")) < 0.2)
            .count() as f64
            / n as f64;
        // 4 standard errors of a binomial share.
        assert!(
            (below - 0.2).abs() <= 4.0 * (0.2f64 * 0.8 / n as f64).sqrt(),
            "{below}"
        );
    }
}
