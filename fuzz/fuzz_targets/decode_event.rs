//! Fuzzes the broker → client decoder the way a client drives it (see
//! `fuzz/src/lib.rs` for what is checked on every step).

#![no_main]

protocol_fuzz::fuzz_driver!(Event);
