//! The `noise_responder` target: see `harness::noise_responder` for what it checks.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::noise_responder(data));
