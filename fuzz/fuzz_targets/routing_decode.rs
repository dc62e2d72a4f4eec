//! The routing protocols' decoders on arbitrary bytes (ROUTING_SYNC, 67, and ROUTED, 68): a
//! bad message is an error, never a panic; whatever decodes re-encodes to the same bytes; the
//! edges of a decoded `Edges` message go through precheck and signature checks without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcore::PeerId;
use routing::{
    EdgeTable, GraphLimits, RoutingSyncMessage, decode_routed, encode_routed, verify_batch,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = RoutingSyncMessage::decode(data, 50_000) {
        assert_eq!(message.encode(), data);
        if let RoutingSyncMessage::Edges(edges) = message {
            let table = EdgeTable::new(PeerId::new([7; 32]), GraphLimits::default());
            let check = table.precheck(edges, 1_700_000_000_000);
            let _ = verify_batch(check.to_verify);
        }
    }
    if let Ok(message) = decode_routed(data) {
        assert_eq!(encode_routed(&message), data);
        let _ = message.verify();
    }
});
