//! Peer exchange on `PeerExchangeRpc` (66), NEAR's peer requests and AElf's `GetNodes`: a
//! node answers with up to N peers (PeerId and address) it was connected to recently, chosen
//! at random, at most once per peer and interval; on the public network it also asks one
//! connected peer every interval and hands the peers it keeps to the connectivity manager,
//! which dials them after the configured sources' peers and trusts none of them.
//!
//! - `message`: [`PeerExchangeMsg`], [`ExchangedPeer`], the bytes on the wire;
//! - `recent`: `RecentPeers`, whom we were connected to and the random sample (pure);
//! - `limiter`: `RequestLimiter`, one answer per peer and interval (pure);
//! - `validate`: `check_answer`, what we keep of an answer (pure);
//! - `actor`: [`PeerExchange`], which drives them.

mod actor;
mod limiter;
mod message;
mod recent;
mod validate;

pub(crate) use actor::{Parts, PeerExchange, QUEUE};
pub use message::{ExchangedPeer, MAX_ADDRESSES_PER_PEER, MAX_ANSWER_BYTES, PeerExchangeMsg};
