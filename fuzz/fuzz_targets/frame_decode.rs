//! Length-prefixed framing on arbitrary bytes: never panics, never yields a frame above the
//! maximum, and never grows the buffer towards a length it has not checked.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use netcore::FrameCodec;
use tokio_util::codec::Decoder;

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    for mut codec in [FrameCodec::u16(MAX), FrameCodec::u32(MAX)] {
        let mut src = BytesMut::from(data);
        loop {
            match codec.decode(&mut src) {
                Ok(Some(frame)) => assert!(frame.len() <= MAX),
                Ok(None) => break,
                Err(_) => break,
            }
        }
        // Reserving happens only for a checked length, plus the next prefix.
        assert!(src.capacity() <= data.len().max(MAX + 4) + 8);
        let _ = codec.decode_eof(&mut src);
    }
});
