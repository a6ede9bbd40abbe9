//! The broker binary (placeholder).
fn main() {}
