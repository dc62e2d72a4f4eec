//! The reassembler fed an arbitrary sequence of stream messages (decoded from the input as a
//! BCS list): never panics, never completes a message above its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::{Reassembler, StreamLimits, StreamMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(pieces) = bcs::from_bytes::<Vec<StreamMessage>>(data) else {
        return;
    };
    // Small limits so that the fuzzer reaches the size checks.
    let limits = StreamLimits::new(1024, 16 * 1024).unwrap();
    let mut reassembler = Reassembler::new(limits);
    for piece in pieces {
        if let Ok(Some(message)) = reassembler.handle_stream_message(piece) {
            assert!(message.payload_len() <= limits.max_message_size());
        }
    }
});
