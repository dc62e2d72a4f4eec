//! The message codec on arbitrary bytes: a bad frame is an error (recoverable or fatal),
//! never a panic; whatever decodes re-encodes to the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};
use wire::{MultiplexMessage, MultiplexMessageCodec};

fuzz_target!(|data: &[u8]| {
    // Bare BCS: a decoded message must encode back to exactly its input.
    if let Ok(message) = bcs::from_bytes::<MultiplexMessage>(data) {
        assert_eq!(bcs::to_bytes(&message).unwrap(), data);
    }
    // Framed: decode frames until the input runs out or a fatal error.
    let mut codec = MultiplexMessageCodec::new(64 * 1024);
    let mut src = BytesMut::from(data);
    while let Ok(Some(item)) = codec.decode(&mut src) {
        if let Ok(message) = item {
            let mut out = BytesMut::new();
            codec.encode(&message, &mut out).unwrap();
        }
    }
});
