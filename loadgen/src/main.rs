//! The load generator (placeholder).
fn main() {}
