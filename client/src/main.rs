//! The chat client (placeholder).
fn main() {}
