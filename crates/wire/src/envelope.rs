//! The envelope of a message frame, encoded and decoded by hand: the BCS of a
//! [`MultiplexMessage`] (wire-format.md, "Message frames") without serde's visitor machinery.
//!
//! The layout is fixed: variant tags are one-byte ULEB128 (every enum here has at most four
//! variants), integers little-endian, payloads a ULEB128 length then the bytes. Writing that
//! directly takes a few stores per message where serde walks the value twice (once to size
//! it) through a generic serializer; reading it directly needs no thread-local to know which
//! buffer a payload may be sliced from.
//!
//! Both directions are exactly BCS: the encoder writes what `bcs::to_bytes` writes, and the
//! decoder accepts what `bcs::from_bytes` accepts, failing with the same [`bcs::Error`]
//! otherwise (truncation, non-canonical or overflowing ULEB128, unknown variant, trailing
//! bytes). `tests/props.rs` and the `wire_decode` fuzz target check both against BCS.
//! Application payloads are opaque bytes here; their own encoding stays BCS (`protocol`).

use bytes::{Bytes, BytesMut};

use crate::message::{
    DirectSendMsg, ErrorCode, MultiplexMessage, NetworkMessage, NotSupportedType, ParsingErrorType,
    RpcRequest, RpcResponse, StreamFragment, StreamHeader, StreamMessage,
};
use crate::protocol::{ProtocolId, RequestId};

/// The longest envelope before a payload: `Stream(Header { request_id, num_fragments,
/// RpcRequest { protocol_id, request_id, priority, len } })` is 2 + 4 + 1 + 1 + 1 + 4 + 1 + 5
/// = 19 bytes.
const MAX_HEADER: usize = 24;

/// An envelope being written: the bytes before the payload, then the payload.
struct Header {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl Header {
    fn new() -> Self {
        Self {
            bytes: [0; MAX_HEADER],
            len: 0,
        }
    }

    fn u8(&mut self, value: u8) {
        self.bytes[self.len] = value;
        self.len += 1;
    }

    fn u32(&mut self, value: u32) {
        self.bytes[self.len..self.len + 4].copy_from_slice(&value.to_le_bytes());
        self.len += 4;
    }

    /// A payload length as BCS writes it: ULEB128, at most 5 bytes for a u32.
    fn uleb128(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.u8(value as u8);
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes the envelope of `message` (everything up to its payload) into `header`, and returns
/// the payload (empty for `Error`). The payload length must have been checked against
/// [`bcs::MAX_SEQUENCE_LENGTH`] (see [`network_message_len`]).
fn network_header<'m>(header: &mut Header, message: &'m NetworkMessage) -> &'m [u8] {
    match message {
        NetworkMessage::Error(code) => {
            header.u8(0);
            match code {
                ErrorCode::ParsingError(parsing) => {
                    header.u8(0);
                    header.u8(parsing.message);
                    header.u8(parsing.protocol);
                }
                ErrorCode::NotSupported(not_supported) => {
                    header.u8(1);
                    let (tag, protocol) = match not_supported {
                        NotSupportedType::RpcRequest(protocol) => (0, protocol),
                        NotSupportedType::DirectSendMsg(protocol) => (1, protocol),
                    };
                    header.u8(tag);
                    header.u8(protocol.as_u8());
                }
            }
            &[]
        }
        NetworkMessage::RpcRequest(request) => {
            header.u8(1);
            header.u8(request.protocol_id.as_u8());
            header.u32(request.request_id.0);
            header.u8(request.priority);
            payload_len(header, &request.raw_request)
        }
        NetworkMessage::RpcResponse(response) => {
            header.u8(2);
            header.u32(response.request_id.0);
            header.u8(response.priority);
            payload_len(header, &response.raw_response)
        }
        NetworkMessage::DirectSendMsg(message) => {
            header.u8(3);
            header.u8(message.protocol_id.as_u8());
            header.u8(message.priority);
            payload_len(header, &message.raw_msg)
        }
    }
}

/// Writes the length of `payload` and returns it.
fn payload_len<'p>(header: &mut Header, payload: &'p Bytes) -> &'p [u8] {
    // Checked by the caller: at most `MAX_SEQUENCE_LENGTH`, which fits a u32.
    header.uleb128(payload.len() as u32);
    payload
}

/// The envelope of `message` as a `MultiplexMessage`, and its payload.
fn multiplex_header<'m>(header: &mut Header, message: &'m MultiplexMessage) -> &'m [u8] {
    match message {
        MultiplexMessage::Message(message) => {
            header.u8(0);
            network_header(header, message)
        }
        MultiplexMessage::Stream(StreamMessage::Header(stream)) => {
            header.u8(1);
            header.u8(0);
            header.u32(stream.request_id);
            header.u8(stream.num_fragments);
            network_header(header, &stream.message)
        }
        MultiplexMessage::Stream(StreamMessage::Fragment(fragment)) => {
            header.u8(1);
            header.u8(1);
            header.u32(fragment.request_id);
            header.u8(fragment.fragment_id);
            payload_len(header, &fragment.raw_data)
        }
    }
}

/// Refuses a payload BCS cannot encode, as `bcs::to_bytes` does.
fn check_payload(payload: &[u8]) -> Result<(), bcs::Error> {
    if payload.len() > bcs::MAX_SEQUENCE_LENGTH {
        return Err(bcs::Error::ExceededMaxLen(payload.len()));
    }
    Ok(())
}

/// The BCS length of `Message(message)`, as `bcs::serialized_size` gives it (and its error
/// for a payload longer than BCS allows).
pub(crate) fn framed_network_message_len(message: &NetworkMessage) -> Result<usize, bcs::Error> {
    network_message_len(message).map(|len| len + 1)
}

/// The BCS length of `message`.
pub(crate) fn network_message_len(message: &NetworkMessage) -> Result<usize, bcs::Error> {
    let payload = message.payload().map_or(&[][..], |p| &p[..]);
    check_payload(payload)?;
    let mut header = Header::new();
    network_header(&mut header, message);
    Ok(header.len + payload.len())
}

/// The BCS length of `message`.
pub(crate) fn multiplex_message_len(message: &MultiplexMessage) -> Result<usize, bcs::Error> {
    let mut header = Header::new();
    let payload = multiplex_header(&mut header, message);
    check_payload(payload)?;
    Ok(header.len + payload.len())
}

/// Appends the BCS of `Message(message)` to `dst`. Its length must have been checked with
/// [`framed_network_message_len`].
pub(crate) fn put_framed_network_message(dst: &mut BytesMut, message: &NetworkMessage) {
    let mut header = Header::new();
    header.u8(0);
    let payload = network_header(&mut header, message);
    dst.extend_from_slice(header.as_slice());
    dst.extend_from_slice(payload);
}

/// Appends the BCS of `message` to `dst`. Its length must have been checked with
/// [`multiplex_message_len`].
pub(crate) fn put_multiplex_message(dst: &mut BytesMut, message: &MultiplexMessage) {
    let mut header = Header::new();
    let payload = multiplex_header(&mut header, message);
    dst.extend_from_slice(header.as_slice());
    dst.extend_from_slice(payload);
}

/// Decodes one frame's BCS into a [`MultiplexMessage`]: what `bcs::from_bytes` accepts, with
/// its errors. A payload of at least `share_from` bytes is a slice of `owner` (which must be
/// the buffer `frame` lies in) when there is one; every other payload is copied.
pub(crate) fn decode(
    frame: &[u8],
    owner: Option<&Bytes>,
    share_from: usize,
) -> Result<MultiplexMessage, bcs::Error> {
    let mut input = Input {
        rest: frame,
        owner,
        share_from,
    };
    let message = input.multiplex_message()?;
    if !input.rest.is_empty() {
        return Err(bcs::Error::RemainingInput);
    }
    Ok(message)
}

/// The bytes of a frame not decoded yet.
struct Input<'a> {
    rest: &'a [u8],
    owner: Option<&'a Bytes>,
    share_from: usize,
}

impl<'a> Input<'a> {
    fn u8(&mut self) -> Result<u8, bcs::Error> {
        let (&byte, rest) = self.rest.split_first().ok_or(bcs::Error::Eof)?;
        self.rest = rest;
        Ok(byte)
    }

    fn u32(&mut self) -> Result<u32, bcs::Error> {
        let (bytes, rest) = self.rest.split_first_chunk::<4>().ok_or(bcs::Error::Eof)?;
        self.rest = rest;
        Ok(u32::from_le_bytes(*bytes))
    }

    /// A ULEB128 u32 as BCS reads it: canonical (no trailing zero digit), at most 5 digits,
    /// no overflow.
    fn uleb128(&mut self) -> Result<u32, bcs::Error> {
        let mut value: u64 = 0;
        for shift in (0..32).step_by(7) {
            let byte = self.u8()?;
            let digit = byte & 0x7f;
            value |= u64::from(digit) << shift;
            if digit == byte {
                if shift > 0 && digit == 0 {
                    return Err(bcs::Error::NonCanonicalUleb128Encoding);
                }
                return u32::try_from(value)
                    .map_err(|_| bcs::Error::IntegerOverflowDuringUleb128Decoding);
            }
        }
        Err(bcs::Error::IntegerOverflowDuringUleb128Decoding)
    }

    /// An enum's variant index, below `variants`. The common case, a canonical one-byte tag,
    /// takes one comparison.
    fn tag(&mut self, variants: u32) -> Result<u32, bcs::Error> {
        let tag = match self.rest.first() {
            Some(&byte) if u32::from(byte) < variants => {
                self.rest = &self.rest[1..];
                return Ok(u32::from(byte));
            }
            _ => self.uleb128()?,
        };
        if tag < variants {
            return Ok(tag);
        }
        // serde's derived variant visitor's refusal, as BCS reports it.
        Err(bcs::Error::Custom(format!(
            "invalid value: integer `{tag}`, expected variant index 0 <= i < {variants}"
        )))
    }

    fn protocol_id(&mut self) -> Result<ProtocolId, bcs::Error> {
        self.u8().map(ProtocolId::from_wire)
    }

    /// A payload: shared with the owning buffer when large, else copied.
    fn payload(&mut self) -> Result<Bytes, bcs::Error> {
        let len = self.uleb128()? as usize;
        if len > bcs::MAX_SEQUENCE_LENGTH {
            return Err(bcs::Error::ExceededMaxLen(len));
        }
        if self.rest.len() < len {
            return Err(bcs::Error::Eof);
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(match self.owner {
            Some(owner) if len >= self.share_from => owner.slice_ref(bytes),
            _ => Bytes::copy_from_slice(bytes),
        })
    }

    fn network_message(&mut self) -> Result<NetworkMessage, bcs::Error> {
        Ok(match self.tag(4)? {
            0 => NetworkMessage::Error(self.error_code()?),
            1 => NetworkMessage::RpcRequest(RpcRequest {
                protocol_id: self.protocol_id()?,
                request_id: RequestId(self.u32()?),
                priority: self.u8()?,
                raw_request: self.payload()?,
            }),
            2 => NetworkMessage::RpcResponse(RpcResponse {
                request_id: RequestId(self.u32()?),
                priority: self.u8()?,
                raw_response: self.payload()?,
            }),
            _ => NetworkMessage::DirectSendMsg(DirectSendMsg {
                protocol_id: self.protocol_id()?,
                priority: self.u8()?,
                raw_msg: self.payload()?,
            }),
        })
    }

    fn error_code(&mut self) -> Result<ErrorCode, bcs::Error> {
        Ok(match self.tag(2)? {
            0 => ErrorCode::ParsingError(ParsingErrorType {
                message: self.u8()?,
                protocol: self.u8()?,
            }),
            _ => ErrorCode::NotSupported(match self.tag(2)? {
                0 => NotSupportedType::RpcRequest(self.protocol_id()?),
                _ => NotSupportedType::DirectSendMsg(self.protocol_id()?),
            }),
        })
    }

    fn multiplex_message(&mut self) -> Result<MultiplexMessage, bcs::Error> {
        Ok(match self.tag(2)? {
            0 => MultiplexMessage::Message(self.network_message()?),
            _ => MultiplexMessage::Stream(match self.tag(2)? {
                0 => StreamMessage::Header(StreamHeader {
                    request_id: self.u32()?,
                    num_fragments: self.u8()?,
                    message: self.network_message()?,
                }),
                _ => StreamMessage::Fragment(StreamFragment {
                    request_id: self.u32()?,
                    fragment_id: self.u8()?,
                    raw_data: self.payload()?,
                }),
            }),
        })
    }
}
