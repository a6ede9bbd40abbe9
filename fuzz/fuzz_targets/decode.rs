//! Fuzzes the client → broker decoder the way the broker drives it (see
//! `fuzz/src/lib.rs` for what is checked on every step).

#![no_main]

protocol_fuzz::fuzz_driver!(Request);
