//! How a training run reports how far it got and what it found on the way.
//! The library never prints: the CLI draws a bar per phase and prints the
//! notes; tests pass [`Silent`].

/// A sink for a long run's progress. Phases do not nest: a phase ends
/// before the next begins.
pub trait Progress {
    /// A phase starts (`what`: e.g. "embedding", "leave-one-source-out
    /// (task)"), with `total` steps (0 when not yet known).
    fn begin(&self, what: &'static str, total: usize);
    /// `done` of `total` steps of the current phase.
    fn update(&self, done: usize, total: usize);
    /// The current phase is over.
    fn end(&self);
    /// A line for the operator: counts, a fold's result, a warning.
    fn note(&self, line: &str);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &'static str, _: usize) {}
    fn update(&self, _: usize, _: usize) {}
    fn end(&self) {}
    fn note(&self, _: &str) {}
}
