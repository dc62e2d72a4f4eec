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
//! bytes). `tests/props.rs`, `tests/envelope.rs` and the `wire_decode` fuzz target check
//! both against BCS. Application payloads are opaque bytes here; their own encoding stays BCS
//! (`protocol`).
//!
//! Nearly every small frame is `Message(DirectSendMsg)` with a payload under 16 KiB: those
//! take a fast path both ways ([`put_small_direct_send`], [`split_small_direct_send`]), a
//! stack header and a slice pattern instead of a call per field. Anything the fast path does
//! not recognise, malformed input included, goes through the general walk, which alone
//! decides every error.

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
    #[inline]
    fn new() -> Self {
        Self {
            bytes: [0; MAX_HEADER],
            len: 0,
        }
    }

    #[inline]
    fn u8(&mut self, value: u8) {
        self.bytes[self.len] = value;
        self.len += 1;
    }

    #[inline]
    fn u32(&mut self, value: u32) {
        self.bytes[self.len..self.len + 4].copy_from_slice(&value.to_le_bytes());
        self.len += 4;
    }

    /// A payload length as BCS writes it: ULEB128, at most 5 bytes for a u32.
    #[inline]
    fn uleb128(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.u8(value as u8);
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Writes the envelope of `message` (everything up to its payload) into `header`, and returns
/// the payload (empty for `Error`). The payload length must have been checked against
/// [`bcs::MAX_SEQUENCE_LENGTH`] (see [`network_message_len`]).
#[inline]
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
#[inline]
fn payload_len<'p>(header: &mut Header, payload: &'p Bytes) -> &'p [u8] {
    // Checked by the caller: at most `MAX_SEQUENCE_LENGTH`, which fits a u32.
    header.uleb128(payload.len() as u32);
    payload
}

/// The envelope of `message` as a `MultiplexMessage`, and its payload.
#[inline]
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
#[inline]
fn check_payload(payload: &[u8]) -> Result<(), bcs::Error> {
    if payload.len() > bcs::MAX_SEQUENCE_LENGTH {
        return Err(bcs::Error::ExceededMaxLen(payload.len()));
    }
    Ok(())
}

/// The BCS length of `Message(message)`, as `bcs::serialized_size` gives it (and its error
/// for a payload longer than BCS allows).
#[inline]
pub(crate) fn framed_network_message_len(message: &NetworkMessage) -> Result<usize, bcs::Error> {
    network_message_len(message).map(|len| len + 1)
}

/// The BCS length of `message`.
#[inline]
pub(crate) fn network_message_len(message: &NetworkMessage) -> Result<usize, bcs::Error> {
    // Tag, then the fixed fields: see `network_header`.
    let (fixed, payload) = match message {
        // Tag, error tag, then two bytes (`ParsingError`) or a tag and a byte (`NotSupported`).
        NetworkMessage::Error(_) => return Ok(4),
        NetworkMessage::RpcRequest(request) => (7, &request.raw_request),
        NetworkMessage::RpcResponse(response) => (6, &response.raw_response),
        NetworkMessage::DirectSendMsg(message) => (3, &message.raw_msg),
    };
    payload_field_len(fixed, payload)
}

/// `fixed` bytes, then `payload` with its length.
#[inline]
fn payload_field_len(fixed: usize, payload: &[u8]) -> Result<usize, bcs::Error> {
    check_payload(payload)?;
    Ok(fixed + uleb128_len(payload.len()) + payload.len())
}

/// Bytes of `len` in ULEB128.
#[inline]
fn uleb128_len(len: usize) -> usize {
    match len {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// The BCS length of `message`.
#[inline]
pub(crate) fn multiplex_message_len(message: &MultiplexMessage) -> Result<usize, bcs::Error> {
    match message {
        MultiplexMessage::Message(message) => framed_network_message_len(message),
        // Two tags, the stream id and the fragment count or id.
        MultiplexMessage::Stream(StreamMessage::Header(header)) => {
            network_message_len(&header.message).map(|len| len + 7)
        }
        MultiplexMessage::Stream(StreamMessage::Fragment(fragment)) => {
            payload_field_len(7, &fragment.raw_data)
        }
    }
}

/// Appends the BCS of `Message(message)` to `dst`. Its length must have been checked with
/// [`framed_network_message_len`].
#[inline]
pub(crate) fn put_framed_network_message(dst: &mut BytesMut, message: &NetworkMessage) {
    let mut header = Header::new();
    header.u8(0);
    let payload = network_header(&mut header, message);
    dst.extend_from_slice(header.as_slice());
    dst.extend_from_slice(payload);
}

/// Appends the BCS of `message` to `dst`. Its length must have been checked with
/// [`multiplex_message_len`].
#[inline]
pub(crate) fn put_multiplex_message(dst: &mut BytesMut, message: &MultiplexMessage) {
    let mut header = Header::new();
    let payload = multiplex_header(&mut header, message);
    dst.extend_from_slice(header.as_slice());
    dst.extend_from_slice(payload);
}

impl MultiplexMessage {
    /// Decodes one frame's BCS, as `bcs::from_bytes(&frame)` does (same checks, same errors),
    /// except that payloads of at least [`MultiplexMessage::SHARED_PAYLOAD_MIN`] bytes are
    /// slices of `frame` rather than copies: a large message is then never copied between
    /// the socket's read buffer and the application.
    ///
    /// Smaller payloads are still copied, so that a small message an application keeps does
    /// not keep alive a read buffer many times its size.
    pub fn from_frame(frame: Bytes) -> Result<Self, bcs::Error> {
        decode(&frame, Some(&frame), Self::SHARED_PAYLOAD_MIN)
    }

    /// Decodes one frame's BCS, as `bcs::from_bytes(frame)` does (same checks, same errors),
    /// copying every payload.
    pub fn from_frame_slice(frame: &[u8]) -> Result<Self, bcs::Error> {
        decode(frame, None, usize::MAX)
    }
}

/// Decodes one frame's BCS into a [`MultiplexMessage`]: what `bcs::from_bytes` accepts, with
/// its errors. A payload of at least `share_from` bytes is a slice of `owner` (which must be
/// the buffer `frame` lies in) when there is one; every other payload is copied.
#[inline]
pub(crate) fn decode(
    frame: &[u8],
    owner: Option<&Bytes>,
    share_from: usize,
) -> Result<MultiplexMessage, bcs::Error> {
    if let Some((protocol_id, priority, payload)) = split_small_direct_send(frame) {
        return Ok(MultiplexMessage::Message(NetworkMessage::DirectSendMsg(
            DirectSendMsg {
                protocol_id,
                priority,
                raw_msg: Input::take_payload(owner, share_from, payload),
            },
        )));
    }
    let mut input = Input {
        rest: frame,
        owner,
        share_from,
    };
    let message = input.multiplex_message().map_err(Fail::into_bcs)?;
    if !input.rest.is_empty() {
        return Err(bcs::Error::RemainingInput);
    }
    Ok(message)
}

/// The parts of the frame of a `Message(DirectSendMsg)` whose payload is shorter than
/// [`SMALL_PAYLOAD_MAX`] (a canonical ULEB128 length of one or two bytes), which is nearly
/// every small frame: the protocol id, the priority and the payload. `None` for any other
/// frame, which then takes the general decoder (so that every refusal keeps its error).
///
/// The same value the general decoder gives, in a few comparisons: that one walks the
/// envelope through a call per field, each with its own end-of-input check and error path.
#[inline]
pub(crate) fn split_small_direct_send(frame: &[u8]) -> Option<(ProtocolId, u8, &[u8])> {
    let [0, 3, protocol, priority, first, rest @ ..] = frame else {
        return None;
    };
    let (len, payload) = if *first < 0x80 {
        (usize::from(*first), rest)
    } else {
        // Canonical: the second digit is the last and not zero.
        let [second @ 1..0x80, payload @ ..] = rest else {
            return None;
        };
        (
            usize::from(first & 0x7f) | usize::from(*second) << 7,
            payload,
        )
    };
    // No trailing bytes (and nothing missing): the general decoder reports either.
    (payload.len() == len).then_some((ProtocolId::from_wire(*protocol), *priority, payload))
}

/// Payloads shorter than this are written and read by the DirectSend fast paths
/// ([`split_small_direct_send`], [`put_small_direct_send`]): their length takes one or two
/// ULEB128 bytes.
pub(crate) const SMALL_PAYLOAD_MAX: usize = 1 << 14;

/// Appends the frame of `Message(DirectSendMsg { protocol_id, priority, payload })`, length
/// prefix included, for a payload shorter than [`SMALL_PAYLOAD_MAX`], and returns the frame's
/// body length; `None` (nothing appended) when that exceeds `max_frame`. The bytes
/// [`put_framed_network_message`] writes behind a u32 prefix, in two copies: the prefix and
/// envelope from one stack array, then the payload.
#[inline]
pub(crate) fn put_small_direct_send(
    dst: &mut BytesMut,
    message: &DirectSendMsg,
    max_frame: usize,
) -> Option<usize> {
    let payload = &message.raw_msg[..];
    debug_assert!(payload.len() < SMALL_PAYLOAD_MAX);
    // Prefix, tags, protocol, priority, then the length's one or two digits.
    let mut head = [
        0,
        0,
        0,
        0,
        0,
        3,
        message.protocol_id.as_u8(),
        message.priority,
        payload.len() as u8,
        0,
    ];
    let head_len = if payload.len() < 0x80 {
        9
    } else {
        head[8] = (payload.len() as u8 & 0x7f) | 0x80;
        head[9] = (payload.len() >> 7) as u8;
        10
    };
    let body = head_len - 4 + payload.len();
    if body > max_frame {
        return None;
    }
    head[..4].copy_from_slice(&(body as u32).to_be_bytes());
    dst.reserve(4 + body);
    dst.extend_from_slice(&head[..head_len]);
    dst.extend_from_slice(payload);
    Some(body)
}

/// Why decoding failed: kept small while it travels up the decoder, made a [`bcs::Error`] at
/// the top.
enum Fail {
    Eof,
    NonCanonical,
    Overflow,
    TooLong(usize),
    Variant { tag: u32, variants: u32 },
}

impl Fail {
    #[cold]
    fn into_bcs(self) -> bcs::Error {
        match self {
            Self::Eof => bcs::Error::Eof,
            Self::NonCanonical => bcs::Error::NonCanonicalUleb128Encoding,
            Self::Overflow => bcs::Error::IntegerOverflowDuringUleb128Decoding,
            Self::TooLong(len) => bcs::Error::ExceededMaxLen(len),
            // serde's derived variant visitor's refusal, as BCS reports it.
            Self::Variant { tag, variants } => bcs::Error::Custom(format!(
                "invalid value: integer `{tag}`, expected variant index 0 <= i < {variants}"
            )),
        }
    }
}

/// The bytes of a frame not decoded yet.
struct Input<'a> {
    rest: &'a [u8],
    owner: Option<&'a Bytes>,
    share_from: usize,
}

impl<'a> Input<'a> {
    #[inline]
    fn u8(&mut self) -> Result<u8, Fail> {
        let (&byte, rest) = self.rest.split_first().ok_or(Fail::Eof)?;
        self.rest = rest;
        Ok(byte)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, Fail> {
        let (bytes, rest) = self.rest.split_first_chunk::<4>().ok_or(Fail::Eof)?;
        self.rest = rest;
        Ok(u32::from_le_bytes(*bytes))
    }

    /// A ULEB128 u32 as BCS reads it: canonical (no trailing zero digit), at most 5 digits,
    /// no overflow.
    #[inline]
    fn uleb128(&mut self) -> Result<u32, Fail> {
        let mut value: u64 = 0;
        for shift in (0..32).step_by(7) {
            let byte = self.u8()?;
            let digit = byte & 0x7f;
            value |= u64::from(digit) << shift;
            if digit == byte {
                if shift > 0 && digit == 0 {
                    return Err(Fail::NonCanonical);
                }
                return u32::try_from(value).map_err(|_| Fail::Overflow);
            }
        }
        Err(Fail::Overflow)
    }

    /// An enum's variant index, below `variants`. The common case, a canonical one-byte tag,
    /// takes one comparison.
    #[inline]
    fn tag(&mut self, variants: u32) -> Result<u32, Fail> {
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
        Err(Fail::Variant { tag, variants })
    }

    #[inline]
    fn protocol_id(&mut self) -> Result<ProtocolId, Fail> {
        self.u8().map(ProtocolId::from_wire)
    }

    /// A payload: shared with the owning buffer when large, else copied.
    #[inline]
    fn payload(&mut self) -> Result<Bytes, Fail> {
        let len = self.uleb128()? as usize;
        if len > bcs::MAX_SEQUENCE_LENGTH {
            return Err(Fail::TooLong(len));
        }
        if self.rest.len() < len {
            return Err(Fail::Eof);
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(Self::take_payload(self.owner, self.share_from, bytes))
    }

    /// `bytes` (a slice of `owner`'s buffer when there is one) as a payload: shared with
    /// `owner` from `share_from` bytes on, else copied.
    #[inline]
    fn take_payload(owner: Option<&Bytes>, share_from: usize, bytes: &[u8]) -> Bytes {
        match owner {
            Some(owner) if bytes.len() >= share_from => owner.slice_ref(bytes),
            _ => Bytes::copy_from_slice(bytes),
        }
    }

    #[inline]
    fn network_message(&mut self) -> Result<NetworkMessage, Fail> {
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

    #[inline]
    fn error_code(&mut self) -> Result<ErrorCode, Fail> {
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

    #[inline]
    fn multiplex_message(&mut self) -> Result<MultiplexMessage, Fail> {
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
