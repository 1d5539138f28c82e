//! The model catalog: which models a router may pick, what they cost and
//! what they can take. Parsed from TOML text; every error names the field
//! and the 1-based line it is on.
//!
//! ```toml
//! default_target = 0.8            # quality target: mean P(success) within 1 - τ of the best, in (0, 1]
//!
//! [[models]]
//! name = "gpt-4-1106-preview"
//! input_usd_per_mtok = 10.0       # USD per 1M input tokens, >= 0
//! output_usd_per_mtok = 30.0      # USD per 1M output tokens, >= 0
//! context_window = 128000         # tokens, > 0
//! latency_ms = 2500               # optional typical latency, > 0
//! tags = ["proprietary"]          # optional
//! ```

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::RouterError;

/// The target used when a catalog does not set `default_target`.
pub const DEFAULT_TARGET: f64 = 0.8;

/// One model a router may choose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpec {
    /// The name outcomes and decisions use for this model.
    pub name: String,
    /// Price in USD per 1M input (prompt) tokens.
    pub input_usd_per_mtok: f64,
    /// Price in USD per 1M output (completion) tokens.
    pub output_usd_per_mtok: f64,
    /// Largest prompt plus completion, in tokens.
    pub context_window: u64,
    /// Typical end-to-end latency in milliseconds, if known.
    pub latency_ms: Option<f64>,
    /// Free-form labels (provider, licence, ...).
    pub tags: Vec<String>,
}

impl ModelSpec {
    /// The price in USD of one call with the given token counts.
    pub fn cost_usd(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (self.input_usd_per_mtok * input_tokens as f64
            + self.output_usd_per_mtok * output_tokens as f64)
            / 1e6
    }
}

/// The models a router chooses among, plus the default quality target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Catalog {
    /// The quality target τ when a request sets none, in (0, 1]: a mean
    /// P(success) within 1 − τ of the best over the traffic (`crate::target`).
    pub default_target: f64,
    /// The models, in file order; names are unique.
    pub models: Vec<ModelSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    default_target: Option<Spanned<f64>>,
    models: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    input_usd_per_mtok: Spanned<f64>,
    output_usd_per_mtok: Spanned<f64>,
    context_window: Spanned<i64>,
    latency_ms: Option<Spanned<f64>>,
    #[serde(default)]
    tags: Vec<String>,
}

impl Catalog {
    /// Parses and validates a catalog from TOML text. Errors name the field
    /// and line: a missing or mistyped field, an unknown field, a negative
    /// price, a non-positive context window or latency, a duplicate name, a
    /// target outside (0, 1], or no models at all.
    pub fn from_toml_str(text: &str) -> Result<Catalog, RouterError> {
        let raw: RawCatalog = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        let err =
            |span: std::ops::Range<usize>, field: &str, message: String| RouterError::Catalog {
                line: line_of(text, span.start),
                field: field.to_string(),
                message,
            };
        let default_target = match &raw.default_target {
            None => DEFAULT_TARGET,
            Some(t) if *t.get_ref() > 0.0 && *t.get_ref() <= 1.0 => *t.get_ref(),
            Some(t) => {
                return Err(err(
                    t.span(),
                    "default_target",
                    format!("{} is outside (0, 1]", t.get_ref()),
                ))
            }
        };
        if raw.models.is_empty() {
            return Err(RouterError::Catalog {
                line: 1,
                field: "models".into(),
                message: "the catalog lists no models".into(),
            });
        }
        let mut models: Vec<ModelSpec> = Vec::with_capacity(raw.models.len());
        for m in raw.models {
            let name = m.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(err(m.name.span(), "name", "is empty".into()));
            }
            if models.iter().any(|o| o.name == name) {
                return Err(err(
                    m.name.span(),
                    "name",
                    format!("`{name}` appears twice"),
                ));
            }
            for (field, price) in [
                ("input_usd_per_mtok", &m.input_usd_per_mtok),
                ("output_usd_per_mtok", &m.output_usd_per_mtok),
            ] {
                let p = *price.get_ref();
                if !(p >= 0.0 && p.is_finite()) {
                    return Err(err(
                        price.span(),
                        field,
                        format!("price {p} must be a finite number >= 0"),
                    ));
                }
            }
            if *m.context_window.get_ref() <= 0 {
                return Err(err(
                    m.context_window.span(),
                    "context_window",
                    format!("{} must be > 0", m.context_window.get_ref()),
                ));
            }
            if let Some(l) = &m.latency_ms {
                if !(*l.get_ref() > 0.0 && l.get_ref().is_finite()) {
                    return Err(err(
                        l.span(),
                        "latency_ms",
                        format!("{} must be > 0", l.get_ref()),
                    ));
                }
            }
            models.push(ModelSpec {
                name,
                input_usd_per_mtok: *m.input_usd_per_mtok.get_ref(),
                output_usd_per_mtok: *m.output_usd_per_mtok.get_ref(),
                context_window: *m.context_window.get_ref() as u64,
                latency_ms: m.latency_ms.map(|l| *l.get_ref()),
                tags: m.tags,
            });
        }
        Ok(Catalog {
            default_target,
            models,
        })
    }

    /// The model called `name`, if listed.
    pub fn get(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Model names in catalog order.
    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// The catalog's models that are not among `fitted` (a router
    /// artifact's models), in catalog order: the router decides them on
    /// its prior alone.
    pub fn names_outside(&self, fitted: &[String]) -> Vec<&str> {
        self.names()
            .into_iter()
            .filter(|n| !fitted.iter().any(|f| f == n))
            .collect()
    }

    /// Whether the catalog prices at least one of `models` (a router
    /// artifact's): a catalog published with an artifact must.
    pub fn lists_any(&self, models: &[String]) -> bool {
        models.iter().any(|m| self.get(m).is_some())
    }
}

/// A rough token count for pricing: about 4 characters per token for
/// English text, at least 1.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// Turns a toml/serde error into one naming the field and line.
fn parse_error(text: &str, e: &toml::de::Error) -> RouterError {
    let message = e.message().to_string();
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
    let quoted = |prefix: &str| {
        message.find(prefix).and_then(|i| {
            message[i + prefix.len()..]
                .split('`')
                .next()
                .map(str::to_string)
        })
    };
    let field = quoted("missing field `")
        .or_else(|| quoted("unknown field `"))
        .or_else(|| {
            // A bad value: the key is what stands before `=` on that line.
            let l = text.lines().nth(line - 1)?;
            let (key, _) = l.split_once('=')?;
            Some(key.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "?".into());
    RouterError::Catalog {
        line,
        field,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"default_target = 0.7

[[models]]
name = "small"
input_usd_per_mtok = 0.2
output_usd_per_mtok = 0.2
context_window = 8192

[[models]]
name = "big"
input_usd_per_mtok = 10.0
output_usd_per_mtok = 30.0
context_window = 128000
latency_ms = 2500
tags = ["proprietary"]
"#;

    fn err(text: &str) -> (usize, String, String) {
        match Catalog::from_toml_str(text).unwrap_err() {
            RouterError::Catalog {
                line,
                field,
                message,
            } => (line, field, message),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn parses_a_good_catalog() {
        let c = Catalog::from_toml_str(GOOD).unwrap();
        assert_eq!(c.default_target, 0.7);
        assert_eq!(c.names(), ["small", "big"]);
        let big = c.get("big").unwrap();
        assert_eq!(big.latency_ms, Some(2500.0));
        assert_eq!(big.tags, ["proprietary"]);
        assert!((big.cost_usd(1000, 100) - (0.01 + 0.003)).abs() < 1e-12);
        assert_eq!(c.get("small").unwrap().latency_ms, None);
    }

    #[test]
    fn models_outside_an_artifact_and_overlap_with_one() {
        let c = Catalog::from_toml_str(GOOD).unwrap();
        let fitted = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(c.names_outside(&fitted(&["big", "other"])), ["small"]);
        assert_eq!(c.names_outside(&fitted(&[])), ["small", "big"]);
        assert!(c.lists_any(&fitted(&["other", "big"])));
        assert!(!c.lists_any(&fitted(&["other"])));
        assert!(!c.lists_any(&fitted(&[])));
    }

    #[test]
    fn negative_price_names_field_and_line() {
        let (line, field, _) =
            err(&GOOD.replace("output_usd_per_mtok = 30.0", "output_usd_per_mtok = -1.0"));
        assert_eq!((line, field.as_str()), (12, "output_usd_per_mtok"));
    }

    #[test]
    fn wrong_type_names_field_and_line() {
        let (line, field, _) =
            err(&GOOD.replace("context_window = 8192", "context_window = \"big\""));
        assert_eq!((line, field.as_str()), (7, "context_window"));
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let (_, field, _) = err(&GOOD.replace("context_window = 8192\n", ""));
        assert_eq!(field, "context_window");
        let (line, field, _) = err(&GOOD.replace("latency_ms = 2500", "latency = 2500"));
        assert_eq!((line, field.as_str()), (14, "latency"));
    }

    #[test]
    fn duplicates_and_bad_target_are_refused() {
        let (line, field, _) = err(&GOOD.replace("name = \"big\"", "name = \"small\""));
        assert_eq!((line, field.as_str()), (10, "name"));
        let (line, field, _) = err(&GOOD.replace("0.7", "1.5"));
        assert_eq!((line, field.as_str()), (1, "default_target"));
    }

    #[test]
    fn estimates_tokens() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcdefgh"), 2);
        assert_eq!(estimate_tokens("abcdefghi"), 3);
    }
}
