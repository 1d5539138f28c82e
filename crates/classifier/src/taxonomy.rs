//! Task-type labels are data: heads carry their own label list.

/// The default 11 task types, in the order the shipped task head emits them.
pub const DEFAULT_TASKS: [&str; 11] = [
    "code",
    "math",
    "reasoning",
    "knowledge",
    "extraction",
    "summarization",
    "translation",
    "creative_writing",
    "brainstorming",
    "classification",
    "chat",
];

/// An ordered, duplicate-free list of label names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Taxonomy(Vec<String>);

impl Taxonomy {
    /// Builds a taxonomy; fails on an empty list, an empty name or a duplicate.
    pub fn new(labels: Vec<String>) -> Result<Taxonomy, String> {
        if labels.len() < 2 {
            return Err(format!(
                "a taxonomy needs at least 2 labels, got {}",
                labels.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for l in &labels {
            if l.trim().is_empty() {
                return Err("a taxonomy label is empty".into());
            }
            if !seen.insert(l.as_str()) {
                return Err(format!("taxonomy label `{l}` appears twice"));
            }
        }
        Ok(Taxonomy(labels))
    }

    pub fn default_tasks() -> Taxonomy {
        Taxonomy(DEFAULT_TASKS.iter().map(|s| s.to_string()).collect())
    }

    pub fn labels(&self) -> &[String] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.0.iter().position(|l| l == label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_has_the_eleven_names() {
        let t = Taxonomy::default_tasks();
        assert_eq!(t.len(), 11);
        assert_eq!(t.index_of("code"), Some(0));
        assert_eq!(t.index_of("chat"), Some(10));
        assert_eq!(t.index_of("poetry"), None);
    }

    #[test]
    fn rejects_duplicates_and_empty_names() {
        assert!(Taxonomy::new(vec!["a".into(), "a".into()])
            .unwrap_err()
            .contains("twice"));
        assert!(Taxonomy::new(vec!["a".into(), " ".into()]).is_err());
        assert!(Taxonomy::new(vec!["a".into()]).is_err());
        assert!(Taxonomy::new(vec!["billing".into(), "tech_support".into()]).is_ok());
    }
}
