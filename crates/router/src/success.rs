//! The success model: P(model m succeeds on prompt x), an item-response
//! form over the classifier's outputs.
//!
//! ```text
//! P(m, x) = Σ_t P(t | x) · σ( a_m · (θ[m][t] − b(x)) + v_m · z(x) )
//! b(x)    = b0 + w · x̂          (prompt difficulty, learned from the embedding)
//! z(x)    = U · x̂               (rank-k prompt traits; rank 0 = plain IRT)
//! x̂       = (embedding − mean) / scale
//! ```
//!
//! θ[m][t] is model m's ability on task t, a_m = exp(log_discrimination[m])
//! its discrimination, v_m its loadings on the k traits. A model the
//! artifact has never seen gets the prior: the mean ability over the fitted
//! models, a = 1, no trait loadings.
//!
//! P_knn is the k-nearest-neighbour estimate over stored training prompts
//! ([`crate::neighbours`]); its weight w is chosen by cross-validation
//! ([`crate::select`]) and the prompts are stored only when w > 0. The
//! per-model calibration applies to the blend.
//!
//! An artifact with `head_features` reads the classifier heads' outputs in
//! x̂ beside (or instead of) the embedding ([`crate::head_features`]); it
//! decides only through [`SuccessModel::try_predict`] given them.

use serde::{Deserialize, Serialize};

use crate::cost::{dot_f32, CostModel};
use crate::error::RouterError;
use crate::head_features::{HeadFeatures, PromptInput};
use crate::neighbours::Neighbours;
use crate::policy::Policy;
use crate::routing_value::Criterion;
use crate::target::TargetTable;

/// Version of the JSON artifact layout; bumped on any incompatible change.
pub const ARTIFACT_VERSION: u32 = 1;

/// A fitted success model (serialised as the router artifact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuccessModel {
    /// Always [`ARTIFACT_VERSION`] for artifacts this build writes.
    pub version: u32,
    /// Identifies the embeddings the model was fitted on (encoder weights and
    /// window); empty if unknown. Predictions on another encoder's
    /// embeddings are meaningless.
    pub encoder_id: String,
    /// Models with fitted parameters, in parameter order.
    pub models: Vec<String>,
    /// Task labels, in the order `task_scores` must be given.
    pub tasks: Vec<String>,
    /// Embedding dimension.
    pub dim: usize,
    /// Number of prompt traits (rows of `traits`).
    pub rank: usize,
    pub feature_mean: Vec<f32>,
    /// Per-dimension standard deviation (never 0).
    pub feature_scale: Vec<f32>,
    /// b0.
    pub difficulty_bias: f32,
    /// w, `dim` weights.
    pub difficulty_weights: Vec<f32>,
    /// U, `rank` rows of `dim` weights.
    pub traits: Vec<Vec<f32>>,
    /// θ, `models` rows of `tasks` abilities (logit scale).
    pub ability: Vec<Vec<f32>>,
    /// log a_m per model.
    pub log_discrimination: Vec<f32>,
    /// v_m, `models` rows of `rank` loadings.
    pub loadings: Vec<Vec<f32>>,
    /// Mean ability per task over the fitted models: the prior for a model
    /// with no outcomes.
    pub prior_ability: Vec<f32>,
    /// Outcomes each model was fitted on, aligned with `models`.
    pub outcome_counts: Vec<usize>,
    /// Per-model Platt calibration `[α, β]`, aligned with `models`:
    /// P' = σ(α · logit(P) + β), fitted on held-out rows (see
    /// [`crate::train::fit_validated`]). Empty: P is used as fitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<[f32; 2]>,
    /// What the cross-validated selection chose (see [`crate::select`]);
    /// absent in artifacts fitted without it (and in older artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<SelectionRecord>,
    /// The stored prompts of the kNN estimate blended into P, with its
    /// weight; absent when the selection chose weight 0 (the plain model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbours: Option<Neighbours>,
    /// Per-prompt expected cost relative to each model's mean
    /// ([`crate::cost`]), with the cross-validated choice; absent in older
    /// artifacts and in fits given no costs (every prompt then costs its
    /// model's mean: factor 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostModel>,
    /// What a quality target τ costs: the λ that reaches it on the training
    /// rows ([`crate::target`]). Absent in artifacts trained before it (a
    /// target then keeps the older per-prompt floor) and in fits given no
    /// costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_table: Option<TargetTable>,
    /// The heads' outputs the prompt term reads beside or instead of the
    /// embedding ([`crate::head_features`]); absent: the embedding alone
    /// (every artifact before them, and the default). `difficulty_weights`
    /// and each row of `traits` then have [`HeadFeatures::width`] values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_features: Option<HeadFeatures>,
}

/// The choice [`crate::select`] made, as recorded in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionRecord {
    /// Folds the training rows were split into (0: too few rows to try).
    pub folds: usize,
    /// The winning candidate: `averages` (per-model averages, no per-prompt
    /// signal) or `prompt` (the item-response model at `l2_prompt`).
    pub choice: String,
    /// Ridge of the final fit.
    pub l2_prompt: f32,
    /// Weight α of the centred per-prompt logit in the calibration
    /// (0: every prompt gets its model's average; 1: the fit as is).
    pub prompt_weight: f32,
    /// Weight w of the kNN estimate in the stacked P (0: the item-response
    /// model alone). Absent in older artifacts: 0.
    #[serde(default)]
    pub knn_weight: f32,
    /// Dimension of the space the kNN estimate searches (the first d
    /// principal components, or the full embedding's dimension; 0: no kNN
    /// estimate, or an artifact older than the choice).
    #[serde(default)]
    pub knn_dim: usize,
    /// How the winner was picked ([`crate::routing_value::Criterion`]).
    /// Absent in older artifacts: cross-entropy, the only one then.
    #[serde(default = "legacy_criterion")]
    pub criterion: Criterion,
    /// Training rows (every model's outcome and cost known) the candidates'
    /// routing values were measured on; 0 when none was.
    #[serde(default)]
    pub routing_rows: usize,
    /// What the winner's prompt term reads ([`crate::head_features`]).
    /// Absent (the embedding) in artifacts without head features.
    #[serde(default, skip_serializing_if = "PromptInput::is_default")]
    pub prompt_input: PromptInput,
    /// Every candidate's out-of-fold loss, in the order tried.
    pub cv_loss: Vec<CandidateLoss>,
}

impl std::fmt::Display for SelectionRecord {
    /// One line, e.g. `prompt (ridge 1, signal weight 0.93) chosen by 3-fold
    /// cross-validation; cross-entropy averages 0.612, prompt l2=1 0.540`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.folds == 0 {
            return write!(f, "averages (too few rows to cross-validate)");
        }
        write!(
            f,
            "{}{} (ridge {}, knn weight {}{}, signal weight {:.2}) chosen by {}-fold cross-validation, criterion {}",
            self.choice,
            match self.prompt_input {
                PromptInput::Embedding => String::new(),
                p => format!(" on {}", p.name()),
            },
            self.l2_prompt,
            self.knn_weight,
            match self.knn_dim {
                0 => String::new(),
                d => format!(" in {d}-d"),
            },
            self.prompt_weight,
            self.folds,
            self.criterion.name()
        )?;
        if self.routing_rows > 0 {
            write!(f, " (routing value on {} rows)", self.routing_rows)?;
        }
        write!(f, "; cross-entropy")?;
        for (i, c) in self.cv_loss.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {:.4}", c.candidate, c.cross_entropy)?;
            if let Some(v) = c.routing_value {
                write!(f, " (AIQ {v:.4})")?;
            }
        }
        Ok(())
    }
}

/// One candidate's cross-validated loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateLoss {
    pub candidate: String,
    /// Out-of-fold cross-entropy per outcome after the candidate's
    /// calibration.
    pub cross_entropy: f32,
    /// `cross_entropy` plus the calibration's parameter count per outcome
    /// (Akaike's correction for fitting it on the same pairs): what the
    /// choice minimises under the cross-entropy criterion.
    pub penalised: f32,
    /// AIQ of the λ sweep of the candidate's out-of-fold P on the
    /// selection's complete training rows ([`crate::routing_value`]);
    /// absent when not measured (no costs, too few complete rows, older
    /// artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_value: Option<f32>,
}

fn legacy_criterion() -> Criterion {
    Criterion::CrossEntropy
}

/// The prompt-side quantities shared by every model's prediction.
#[derive(Debug, Clone)]
pub struct PromptTerms {
    /// b(x).
    pub difficulty: f32,
    /// z(x), `rank` values.
    pub traits: Vec<f32>,
    /// Neighbour (sum of scores, count) per fitted model; empty when the
    /// model has no neighbours (or weight 0).
    pub neighbours: Vec<[f32; 2]>,
}

impl SuccessModel {
    /// Parses an artifact, refusing other versions and inconsistent shapes.
    pub fn from_json(text: &str) -> Result<SuccessModel, RouterError> {
        let m: SuccessModel =
            serde_json::from_str(text).map_err(|e| RouterError::Artifact(e.to_string()))?;
        if m.version != ARTIFACT_VERSION {
            return Err(RouterError::Artifact(format!(
                "version {} but this build reads version {ARTIFACT_VERSION}; retrain with `pointsman train router`",
                m.version
            )));
        }
        m.check_shapes().map_err(RouterError::Artifact)?;
        crate::validate::check_numbers(&m)?;
        // The neighbour search's layout now, so no request pays for it.
        if let Some(nb) = &m.neighbours {
            nb.prepare();
        }
        Ok(m)
    }

    /// The artifact as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a SuccessModel always serialises")
    }

    fn check_shapes(&self) -> Result<(), String> {
        let (n, t, d, k) = (self.models.len(), self.tasks.len(), self.dim, self.rank);
        if let Some(h) = &self.head_features {
            h.check()?;
        }
        let width = self.input_width();
        let ok = self.feature_mean.len() == d
            && self.feature_scale.len() == d
            && self.difficulty_weights.len() == width
            && self.traits.len() == k
            && self.traits.iter().all(|r| r.len() == width)
            && self.ability.len() == n
            && self.ability.iter().all(|r| r.len() == t)
            && self.log_discrimination.len() == n
            && self.loadings.len() == n
            && self.loadings.iter().all(|r| r.len() == k)
            && self.prior_ability.len() == t
            && self.outcome_counts.len() == n
            && (self.calibration.is_empty() || self.calibration.len() == n)
            && t > 0;
        if !ok {
            return Err("parameter shapes do not match models/tasks/dim/rank".into());
        }
        if let Some(c) = &self.cost {
            c.check(n, d)?;
        }
        if let Some(t) = &self.target_table {
            t.check()?;
            if let Some(m) = t.models.iter().find(|m| !self.models.contains(m)) {
                return Err(format!(
                    "target_table: models names `{m}`, which the artifact has not fitted"
                ));
            }
        }
        match &self.neighbours {
            Some(nb) => nb.check(n, d),
            None => Ok(()),
        }
    }

    /// The policy to decide with under this artifact: a target τ becomes
    /// the λ rule at the λ its target table gives for τ; anything else (and
    /// a target under an artifact without a table) is returned unchanged.
    pub fn resolve_policy(&self, policy: Policy) -> Policy {
        crate::target::resolve(self.target_table.as_ref(), policy)
    }

    /// Why a target τ would not mean what the artifact measured when
    /// routing among `routable` (the catalog's models): its target table
    /// was built over another set of models (recorded, or else all the
    /// artifact's). None when the sets agree or there is no table. The
    /// policy still works; its τ → λ map was measured on other choices.
    pub fn target_table_mismatch(&self, routable: &[&str]) -> Option<String> {
        let table = self.target_table.as_ref()?;
        let built: Vec<&str> = match table.models.is_empty() {
            true => self.models.iter().map(String::as_str).collect(),
            false => table.models.iter().map(String::as_str).collect(),
        };
        let missing: Vec<&str> = routable
            .iter()
            .copied()
            .filter(|m| !built.contains(m))
            .collect();
        let extra: Vec<&str> = built
            .iter()
            .copied()
            .filter(|m| !routable.contains(m))
            .collect();
        if missing.is_empty() && extra.is_empty() {
            return None;
        }
        let list = |v: &[&str]| match v.is_empty() {
            true => "none".to_string(),
            false => v.join(", "),
        };
        Some(format!(
            "the target table (τ → λ) was built over other models than the catalog routes among (in the catalog only: {}; in the table only: {}): a target τ is then only approximate; retrain with `pointsman train router --route-models` naming the catalog's models",
            list(&missing),
            list(&extra)
        ))
    }

    /// Index of a fitted model.
    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m == name)
    }

    /// `task_scores` by name as a vector in `self.tasks` order, renormalised
    /// to sum to 1. Labels the model does not know are dropped; if nothing
    /// is left (or the map is empty) every task gets equal weight.
    pub fn task_vector<'a>(&self, scores: impl IntoIterator<Item = (&'a str, f32)>) -> Vec<f32> {
        let mut v = vec![0.0f32; self.tasks.len()];
        for (name, s) in scores {
            if let Some(i) = self.tasks.iter().position(|t| t == name) {
                v[i] += s.max(0.0);
            }
        }
        let sum: f32 = v.iter().sum();
        if sum > 0.0 {
            v.iter_mut().for_each(|x| *x /= sum);
        } else {
            v.iter_mut()
                .for_each(|x| *x = 1.0 / self.tasks.len() as f32);
        }
        v
    }

    /// Length of the prompt term's input: `dim`, or what
    /// [`HeadFeatures::width`] says.
    pub fn input_width(&self) -> usize {
        self.head_features
            .as_ref()
            .map_or(self.dim, |h| h.width(self.dim))
    }

    /// The head features this artifact reads, in the order
    /// [`SuccessModel::try_predict`] takes them (empty: none).
    pub fn head_feature_names(&self) -> &[String] {
        self.head_features.as_ref().map_or(&[], |h| &h.names)
    }

    /// b(x) and z(x) for one embedding (`dim` values) and, for an artifact
    /// that reads them, the heads' outputs (in
    /// [`SuccessModel::head_feature_names`] order; an error naming the
    /// field when they are missing).
    pub fn prompt_terms_with(
        &self,
        embedding: &[f32],
        head_outputs: &[f32],
    ) -> Result<PromptTerms, RouterError> {
        match &self.head_features {
            None => Ok(self.prompt_terms(embedding)),
            Some(h) => {
                h.check_outputs(head_outputs)?;
                assert_eq!(embedding.len(), self.dim, "embedding dimension");
                let x = h.input(self.standardise(embedding), head_outputs);
                Ok(self.terms_of(&x, embedding))
            }
        }
    }

    /// b(x) and z(x) for one embedding (`dim` values). For an artifact
    /// with head features, whose input this lacks, use
    /// [`SuccessModel::prompt_terms_with`] (here every P would be NaN).
    pub fn prompt_terms(&self, embedding: &[f32]) -> PromptTerms {
        assert_eq!(embedding.len(), self.dim, "embedding dimension");
        if self.head_features.is_some() {
            return PromptTerms {
                difficulty: f32::NAN,
                traits: vec![f32::NAN; self.rank],
                neighbours: Vec::new(),
            };
        }
        // Standardise once, then one contiguous dot product per term (the
        // loop over traits inside the loop over dimensions it replaced
        // read the trait rows strided and did not vectorise: ~2 µs).
        let x = self.standardise(embedding);
        self.terms_of(&x, embedding)
    }

    /// The prompt terms of the prompt term's input `x`.
    fn terms_of(&self, x: &[f32], embedding: &[f32]) -> PromptTerms {
        let difficulty = self.difficulty_bias + dot_f32(&self.difficulty_weights, x);
        let traits = self.traits.iter().map(|row| dot_f32(row, x)).collect();
        let neighbours = match &self.neighbours {
            Some(nb) if nb.weight > 0.0 => nb.neighbour_sums(embedding),
            _ => Vec::new(),
        };
        PromptTerms {
            difficulty,
            traits,
            neighbours,
        }
    }

    /// x̂ = (embedding − mean) / scale.
    fn standardise(&self, embedding: &[f32]) -> Vec<f32> {
        embedding
            .iter()
            .zip(self.feature_mean.iter().zip(&self.feature_scale))
            .map(|(e, (m, s))| (e - m) / s)
            .collect()
    }

    /// Index of a fitted model, trying position `hint` first: callers pass
    /// names in catalog order, which is usually the artifact's.
    fn model_index_near(&self, name: &str, hint: usize) -> Option<usize> {
        match self.models.get(hint) {
            Some(m) if m == name => Some(hint),
            _ => self.model_index(name),
        }
    }

    /// P(success) of fitted model `m` (an index) given the prompt terms and
    /// the task distribution (in `self.tasks` order). In [0, 1].
    pub fn p_model(&self, m: usize, terms: &PromptTerms, task_scores: &[f32]) -> f64 {
        let a = self.log_discrimination[m].exp();
        let interaction: f32 = self.loadings[m]
            .iter()
            .zip(&terms.traits)
            .map(|(v, z)| v * z)
            .sum();
        let p = mix(
            &self.ability[m],
            a,
            interaction,
            terms.difficulty,
            task_scores,
        );
        let p = match (&self.neighbours, terms.neighbours.get(m)) {
            (Some(nb), Some(&sums)) => {
                let w = nb.weight as f64;
                (1.0 - w) * p + w * nb.estimate(sums, p)
            }
            _ => p,
        };
        match self.calibration.get(m) {
            Some(&[alpha, beta]) => platt(p, alpha, beta),
            None => p,
        }
    }

    /// P(success) for a model by name; the prior for one never fitted.
    pub fn p_named(&self, name: &str, terms: &PromptTerms, task_scores: &[f32]) -> f64 {
        match self.model_index(name) {
            Some(m) => self.p_model(m, terms, task_scores),
            None => mix(&self.prior_ability, 1.0, 0.0, terms.difficulty, task_scores),
        }
    }

    /// The cost factor r(m, x) of each named model on one prompt, in
    /// `names` order: its expected cost on this prompt over its mean cost
    /// (1 for a model never fitted, and for every model when the artifact
    /// has no cost model or chose `averages`). Multiply a model's typical
    /// cost by it (see [`crate::cost`]).
    pub fn cost_factors(&self, names: &[&str], embedding: &[f32]) -> Vec<f64> {
        assert_eq!(embedding.len(), self.dim, "embedding dimension");
        let cost = match &self.cost {
            Some(c) if !c.weights.is_empty() => c,
            _ => return vec![1.0; names.len()],
        };
        let x = self.standardise(embedding);
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                self.model_index_near(n, i)
                    .map_or(1.0, |m| cost.factor(m, &x))
            })
            .collect()
    }

    /// P(success) for each named model on one prompt, in `names` order.
    /// An artifact with head features needs [`SuccessModel::try_predict`]:
    /// here its every P is NaN (which every decision path refuses).
    pub fn predict(&self, names: &[&str], embedding: &[f32], task_scores: &[f32]) -> Vec<f64> {
        let terms = self.prompt_terms(embedding);
        self.predict_terms(names, &terms, task_scores)
    }

    /// [`SuccessModel::predict`] with the heads' outputs the artifact reads
    /// (in [`SuccessModel::head_feature_names`] order; ignored by an
    /// artifact without head features). Fails, naming the field, when they
    /// do not match.
    pub fn try_predict(
        &self,
        names: &[&str],
        embedding: &[f32],
        task_scores: &[f32],
        head_outputs: &[f32],
    ) -> Result<Vec<f64>, RouterError> {
        let terms = self.prompt_terms_with(embedding, head_outputs)?;
        Ok(self.predict_terms(names, &terms, task_scores))
    }

    fn predict_terms(&self, names: &[&str], terms: &PromptTerms, task_scores: &[f32]) -> Vec<f64> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| match self.model_index_near(n, i) {
                Some(m) => self.p_model(m, terms, task_scores),
                None => self.p_named(n, terms, task_scores),
            })
            .collect()
    }
}

/// Σ_t p_t σ(a (θ_t − b) + interaction).
fn mix(ability: &[f32], a: f32, interaction: f32, b: f32, task_scores: &[f32]) -> f64 {
    ability
        .iter()
        .zip(task_scores)
        .map(|(&th, &p)| p as f64 * sigmoid((a * (th - b) + interaction) as f64))
        .sum::<f64>()
        .clamp(0.0, 1.0)
}

/// σ(α · logit(p) + β), with p clamped away from 0 and 1.
pub fn platt(p: f64, alpha: f32, beta: f32) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    sigmoid(alpha as f64 * (p / (1.0 - p)).ln() + beta as f64)
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
