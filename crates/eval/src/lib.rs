//! Offline routing evaluation.
