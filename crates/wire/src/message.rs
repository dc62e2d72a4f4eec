//! The messages of AptosNet v1 (wire-format.md, "Message frames"): one [`MultiplexMessage`] per frame.
//!
//! BCS: an enum is its variant index as ULEB128 (one byte here), integers are little-endian,
//! byte strings are a ULEB128 length then the bytes. Variant order is therefore part of the
//! wire format: never reorder. The codec encodes and decodes these messages by hand
//! (`envelope`, which also holds [`MultiplexMessage::from_frame`]); the serde derives, which write and read the same bytes, remain for other
//! formats and for `bcs` itself, against which the hand-made codec is tested.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::protocol::{ProtocolId, RequestId};

impl MultiplexMessage {
    /// The smallest payload [`MultiplexMessage::from_frame`] shares with its frame instead of
    /// copying: 64 KiB. A shared payload keeps its whole read buffer alive while the
    /// application holds it (a queued message can wait a while in a full inbound queue);
    /// frames this large get a read buffer sized about to the frame, so a kept payload pins
    /// at most about twice its size, while copying below this costs little.
    pub const SHARED_PAYLOAD_MIN: usize = 64 * 1024;
}

/// A message between two peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMessage {
    /// Tag 0: the sender could not handle something we sent.
    Error(ErrorCode),
    /// Tag 1: an RPC request.
    RpcRequest(RpcRequest),
    /// Tag 2: the response to an RPC request.
    RpcResponse(RpcResponse),
    /// Tag 3: a one-way message.
    DirectSendMsg(DirectSendMsg),
}

impl NetworkMessage {
    /// Length of the application payload (0 for `Error`): what decides whether the message
    /// needs a stream. (Inline: asked of every message queued, written and read.)
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.payload().map_or(0, Bytes::len)
    }

    /// The application payload; `None` for `Error`.
    #[inline]
    pub fn payload(&self) -> Option<&Bytes> {
        match self {
            Self::Error(_) => None,
            Self::RpcRequest(request) => Some(&request.raw_request),
            Self::RpcResponse(response) => Some(&response.raw_response),
            Self::DirectSendMsg(message) => Some(&message.raw_msg),
        }
    }

    /// The application payload, mutably; `None` for `Error`.
    pub(crate) fn payload_mut(&mut self) -> Option<&mut Bytes> {
        match self {
            Self::Error(_) => None,
            Self::RpcRequest(request) => Some(&mut request.raw_request),
            Self::RpcResponse(response) => Some(&mut response.raw_response),
            Self::DirectSendMsg(message) => Some(&mut message.raw_msg),
        }
    }
}

/// An RPC request (`NetworkMessage` tag 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// The protocol the request belongs to; it also decides the payload's encoding.
    pub protocol_id: ProtocolId,
    /// Chosen by the requester; the response carries it back.
    pub request_id: RequestId,
    /// The wire's priority byte. AptosNet always sends 0 and ignores it on receipt.
    pub priority: u8,
    /// The encoded request.
    pub raw_request: Bytes,
}

/// The response to an RPC request (`NetworkMessage` tag 2). It names no protocol: the
/// request id says which request it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcResponse {
    /// The request's id.
    pub request_id: RequestId,
    /// The wire's priority byte, as in [`RpcRequest::priority`].
    pub priority: u8,
    /// The encoded response.
    pub raw_response: Bytes,
}

/// A one-way message (`NetworkMessage` tag 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectSendMsg {
    /// The protocol the message belongs to; it also decides the payload's encoding.
    pub protocol_id: ProtocolId,
    /// The wire's priority byte, as in [`RpcRequest::priority`].
    pub priority: u8,
    /// The encoded message.
    pub raw_msg: Bytes,
}

/// Why a peer could not handle a message (`NetworkMessage` tag 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Tag 0: a frame did not decode.
    ParsingError(ParsingErrorType),
    /// Tag 1: a message named a protocol the peer does not serve.
    NotSupported(NotSupportedType),
}

impl ErrorCode {
    /// The reply to a frame that did not decode: its first two bytes (the message tag and,
    /// for most messages, the protocol id), with 0 for bytes the frame does not have.
    pub fn parsing_error_from_frame(frame: &[u8]) -> Self {
        Self::ParsingError(ParsingErrorType {
            message: frame.first().copied().unwrap_or(0),
            protocol: frame.get(1).copied().unwrap_or(0),
        })
    }
}

/// The start of a frame that did not decode, echoed back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsingErrorType {
    /// The frame's first byte.
    pub message: u8,
    /// The frame's second byte.
    pub protocol: u8,
}

/// Which kind of message named an unsupported protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotSupportedType {
    /// Tag 0: an RPC request.
    RpcRequest(ProtocolId),
    /// Tag 1: a direct-send message.
    DirectSendMsg(ProtocolId),
}

/// A piece of a streamed message (`MultiplexMessage` tag 1), see [`crate::OutboundStream`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMessage {
    /// Tag 0: opens a stream.
    Header(StreamHeader),
    /// Tag 1: continues it.
    Fragment(StreamFragment),
}

/// Opens a stream: the original message carrying the first part of its payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// The stream's id: a per-connection counter, separate from RPC request ids.
    pub request_id: u32,
    /// How many fragments follow (the header is not counted).
    pub num_fragments: u8,
    /// The message, its payload cut to the part that fits in this frame.
    pub message: NetworkMessage,
}

/// Continues a stream with the next part of the payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFragment {
    /// The stream's id, as in its header.
    pub request_id: u32,
    /// 1 for the first fragment after the header, then 2, 3, ….
    pub fragment_id: u8,
    /// The next part of the payload.
    pub raw_data: Bytes,
}

/// What one frame carries: a whole message, or a piece of a streamed one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MultiplexMessage {
    /// Tag 0: a message that fits in one frame.
    Message(NetworkMessage),
    /// Tag 1: a header or fragment of a message too large for one frame.
    Stream(StreamMessage),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parsing-error reply echoes the frame's first two bytes, zero-filled.
    #[test]
    fn parsing_error_takes_the_first_two_bytes() {
        let code = |frame: &[u8]| match ErrorCode::parsing_error_from_frame(frame) {
            ErrorCode::ParsingError(p) => (p.message, p.protocol),
            ErrorCode::NotSupported(_) => unreachable!("always a parsing error"),
        };
        assert_eq!(code(&[9, 5, 1]), (9, 5));
        assert_eq!(code(&[9]), (9, 0));
        assert_eq!(code(&[]), (0, 0));
    }

    /// Whether `part` lies within `frame`'s bytes (shares its buffer).
    fn contains(frame: &Bytes, part: &[u8]) -> bool {
        let start = frame.as_ptr() as usize;
        let part_start = part.as_ptr() as usize;
        part_start >= start && part_start + part.len() <= start + frame.len()
    }

    fn direct(len: usize) -> MultiplexMessage {
        MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
            protocol_id: ProtocolId::CONSENSUS_DIRECT_SEND_BCS,
            priority: 0,
            raw_msg: (0..len).map(|i| i as u8).collect(),
        }))
    }

    /// `from_frame` decodes what `bcs::from_bytes` decodes, sharing only large payloads with
    /// the frame.
    #[test]
    fn from_frame_shares_large_payloads_only() {
        let large = MultiplexMessage::SHARED_PAYLOAD_MIN;
        let messages = [
            direct(0),
            direct(100),
            direct(large),
            MultiplexMessage::Message(NetworkMessage::RpcRequest(RpcRequest {
                protocol_id: ProtocolId::CONSENSUS_RPC_BCS,
                request_id: RequestId(9),
                priority: 1,
                raw_request: Bytes::from(vec![5; large + 1]),
            })),
            MultiplexMessage::Message(NetworkMessage::RpcResponse(RpcResponse {
                request_id: RequestId(9),
                priority: 0,
                raw_response: Bytes::from(vec![6; 3 * large]),
            })),
            MultiplexMessage::Stream(StreamMessage::Header(StreamHeader {
                request_id: 1,
                num_fragments: 2,
                message: NetworkMessage::DirectSendMsg(DirectSendMsg {
                    protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
                    priority: 0,
                    raw_msg: Bytes::from(vec![7; large]),
                }),
            })),
            MultiplexMessage::Stream(StreamMessage::Fragment(StreamFragment {
                request_id: 1,
                fragment_id: 1,
                raw_data: Bytes::from(vec![8; large]),
            })),
            MultiplexMessage::Message(NetworkMessage::Error(ErrorCode::parsing_error_from_frame(
                &[1, 2],
            ))),
        ];
        for message in messages {
            let frame = Bytes::from(bcs::to_bytes(&message).unwrap());
            let decoded = MultiplexMessage::from_frame(frame.clone()).unwrap();
            assert_eq!(decoded, message);
            assert_eq!(
                decoded,
                bcs::from_bytes::<MultiplexMessage>(&frame).unwrap()
            );
            let payload = match &decoded {
                MultiplexMessage::Message(m) => m.payload().cloned(),
                MultiplexMessage::Stream(StreamMessage::Header(h)) => h.message.payload().cloned(),
                MultiplexMessage::Stream(StreamMessage::Fragment(f)) => Some(f.raw_data.clone()),
            };
            if let Some(payload) = payload.filter(|p| !p.is_empty()) {
                let shared = contains(&frame, &payload);
                assert_eq!(shared, payload.len() >= large, "{} bytes", payload.len());
            }
            assert_eq!(MultiplexMessage::from_frame_slice(&frame).unwrap(), message);
        }
    }

    /// A bad frame fails with `bcs::from_bytes`'s error.
    #[test]
    fn from_frame_fails_like_bcs() {
        let good = bcs::to_bytes(&direct(5000)).unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        for frame in [
            &good[..good.len() - 1],
            &trailing[..],
            &[2, 0][..],
            &[0, 3, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f][..],
            &[][..],
        ] {
            let ours = MultiplexMessage::from_frame(Bytes::copy_from_slice(frame)).unwrap_err();
            let theirs = bcs::from_bytes::<MultiplexMessage>(frame).unwrap_err();
            assert_eq!(ours, theirs);
            assert_eq!(
                MultiplexMessage::from_frame_slice(frame).unwrap_err(),
                theirs
            );
        }
    }

    /// Payloads still decode from self-describing formats (a JSON array of numbers).
    #[test]
    fn payloads_decode_from_json_too() {
        let message = direct(3);
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(
            serde_json::from_str::<MultiplexMessage>(&json).unwrap(),
            message
        );
    }

    /// Payload accessors see the payload of every variant but `Error`.
    #[test]
    fn payload_len_is_zero_for_errors() {
        let error = NetworkMessage::Error(ErrorCode::parsing_error_from_frame(&[]));
        assert_eq!(error.payload_len(), 0);
        let response = NetworkMessage::RpcResponse(RpcResponse {
            request_id: RequestId(1),
            priority: 0,
            raw_response: Bytes::from_static(b"abc"),
        });
        assert_eq!(response.payload_len(), 3);
    }
}
