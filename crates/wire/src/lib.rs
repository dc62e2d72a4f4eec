//! wire: what travels between two peerlane (or AptosNet) nodes once the Noise session is up,
//! byte for byte as AptosNet v1 puts it on the wire (`docs/wire-format.md`). Pure: no tasks,
//! no sockets; the async parts work on any `AsyncRead` / `AsyncWrite`.
//!
//! # How data flows
//!
//! ```text
//! connection set-up:
//!   own HandshakeMsg ──exchange_handshake──► theirs ──negotiate──► (version, common protocols)
//!
//! then one frame per message (MultiplexMessageStream / MultiplexMessageSink):
//!   u32 BE length ─ BCS MultiplexMessage
//!                     ├─ Message(NetworkMessage): Error | RpcRequest | RpcResponse | DirectSend
//!                     └─ Stream(StreamMessage):   Header, Fragment 1, …, Fragment n
//!                          OutboundStream cuts a large NetworkMessage into these,
//!                          Reassembler joins them back into one
//!
//! payload bytes ◄──► application values: ProtocolId::to_bytes / from_bytes (BCS, JSON, LZ4)
//! ```
//!
//! After the Noise handshake both sides swap a [`HandshakeMsg`] ([`exchange_handshake`]) and
//! [`HandshakeMsg::negotiate`] settles the messaging version and the common protocols. From
//! then on each frame carries one [`MultiplexMessage`]: a whole [`NetworkMessage`], or a piece
//! of one too large for a frame ([`StreamMessage`], cut by [`OutboundStream`] and put back
//! together by [`Reassembler`]). [`MultiplexMessageStream`] and [`MultiplexMessageSink`] read
//! and write those frames, with the envelope (everything but the payload) encoded and decoded
//! by hand rather than through serde, exactly as BCS writes and reads it; a payload's bytes
//! are encoded per protocol by [`ProtocolId::to_bytes`] / [`ProtocolId::from_bytes`].
//!
//! Types to read first: [`MultiplexMessage`] and [`NetworkMessage`], then
//! [`MultiplexMessageStream`], then [`Reassembler`].
//!
//! ```
//! # async fn demo() -> Result<(), wire::Error> {
//! use bytes::Bytes;
//! use futures::{SinkExt, StreamExt};
//! use wire::{DirectSendMsg, MultiplexMessage, NetworkMessage, ProtocolId};
//!
//! let (a, b) = tokio::io::duplex(1024);
//! let mut sink = wire::MultiplexMessageSink::new(a);
//! let mut stream = wire::MultiplexMessageStream::new(b);
//! let message = MultiplexMessage::Message(NetworkMessage::DirectSendMsg(DirectSendMsg {
//!     protocol_id: ProtocolId::MEMPOOL_DIRECT_SEND,
//!     priority: 0,
//!     raw_msg: Bytes::from_static(b"hello world"),
//! }));
//! sink.send(&message).await?;
//! assert_eq!(stream.next().await.transpose()?, Some(message));
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```

mod codec;
mod envelope;
mod error;
mod handshake;
mod limits;
mod message;
mod network;
mod protocol;
mod stream;

pub use codec::{
    DEFAULT_BACKPRESSURE_BOUNDARY, MultiplexMessageCodec, MultiplexMessageSink,
    MultiplexMessageStream,
};
pub use error::{BoxError, Error};
pub use handshake::{HandshakeMsg, ProtocolIdSet, exchange_handshake};
pub use limits::{MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, STREAM_OVERHEAD, StreamLimits};
pub use message::{
    DirectSendMsg, ErrorCode, MultiplexMessage, NetworkMessage, NotSupportedType, ParsingErrorType,
    RpcRequest, RpcResponse, StreamFragment, StreamHeader, StreamMessage,
};
pub use netcore::PeerId;
pub use network::{ChainId, MessagingProtocolVersion, NetworkId};
pub use protocol::{Encoding, MAX_COMPRESS_SIZE, ProtocolId, RequestId};
pub use stream::{OutboundStream, Reassembler, needs_stream};
