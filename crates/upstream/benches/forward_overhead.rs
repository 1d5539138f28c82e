//! Gateway forwarding overhead (written in a later commit).
fn main() {}
