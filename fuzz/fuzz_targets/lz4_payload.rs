//! The `lz4_payload` target: see `harness::lz4_payload` for what it checks.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::lz4_payload(data));
