//! The `routing_decode` target: see `harness::routing_decode` for what it checks.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::routing_decode(data));
