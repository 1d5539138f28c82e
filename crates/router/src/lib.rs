//! Routing: see docs/ARCHITECTURE.md.
