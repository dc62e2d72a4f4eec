//! connectivity-manager: decides which peers a node should be connected to. It never touches
//! sockets, frames or encryption: the facade owns the dialing, reports what happens to its
//! connections, and carries out the actions this crate asks for.
//!
//! # How data flows
//!
//! ```text
//! on-chain set (watch) ─┐
//! discovery file (TOML) ├─► DiscoveredSet ─► trusted peers ─► noise::TrustedPeers
//! config seeds ─────────┤        │           └► their IPs (watch) ─► the facade's listener
//! stored peers ─────────┘        │ (merged, by priority)
//!                                ▼
//! peer exchange (Exchanged) ─► ExchangedPeers (bounded, indirect) ─► DiscoveredSet
//! PeerEvent ────────────────► Policy ◄── now, rng, backoff per peer, PeerScores
//! (Connected, Disconnected,      │
//!  DialResult, RemoteRefusal)    ├─► Outcome ──► Metrics (recorded by the manager)
//!                                ▼
//!                  Action::{Dial, CancelDial, Disconnect} ──► facade
//! ```
//!
//! 1. Each [`DiscoverySource`] (on-chain set, file, config seeds; highest priority first)
//!    gives a full view of the peers it knows. [`DiscoveredSet`] merges the views into the
//!    set of peers we may dial, the trusted-peer map the Noise layer checks, and the IPs of
//!    the trusted peers' addresses, which a listener admits before any handshake
//!    ([`ConnectivityManager::trusted_ips`]). The file
//!    source's reading (and its last-good fallback) is [`FileSource`]; the merge is pure.
//! 2. [`Policy`] is the decision, without IO: from the discovered set, the connected peers
//!    and the dial results it computes [`Action`]s, its next deadline and the [`Outcome`] of
//!    each report (it keeps no metrics). On the validator
//!    network it dials every eligible validator; elsewhere it keeps a bounded number of
//!    outbound connections, chosen at random. Failed dials back off exponentially with
//!    jitter ([`Backoff`]).
//! 3. [`ConnectivityManager`] is the actor that drives the policy: a periodic check, the
//!    discovery sources, [`PeerEvent`]s from the facade (through a
//!    [`ConnectivityHandle`]) and a shutdown token in; actions out on a bounded channel. It
//!    records the policy's outcomes in [`Metrics`].
//!
//! 4. What peers tell us feeds the policy too: a [`RemoteRefusal`] (the reason a peer gave
//!    for closing or refusing our connection) holds its next dial back for
//!    [`refusal_delay`]; peers learned through peer exchange ([`PeerEvent::Exchanged`]) form
//!    the lowest-priority source, [`DiscoverySource::PeerExchange`], kept in the bounded
//!    [`ExchangedPeers`], never trusted, and [`Provenance::Verified`] once we connected to
//!    them ourselves.
//!    A node with a persistent store gives the peers it kept from earlier runs as
//!    [`DiscoverySource::Stored`] ([`ConnectivityManager::stored_peers`]): below the seeds,
//!    above peer exchange, never trusted, dialed in the store's order and retried with
//!    backoff like any discovered peer.
//! 5. On the public network the policy keeps the connected peers within a target range
//!    ([`Config::target_peers`]) with a minimum of outbound ones, closes the lowest-scoring
//!    inbound peer that is not whitelisted above the high mark, and draws dial candidates
//!    weighted by round-trip time. Scores and RTTs come from a [`PeerScores`] the facade
//!    gives it ([`ConnectivityManager::scores`]); a persistent peer store can implement the
//!    same trait.
//!
//! Types to read first: [`Policy`], [`ConnectivityManager`], [`Config`].
//!
//! Settings are described for operators in `docs/configuration.md`; metrics in [`Metrics`]
//! and `docs/operations.md`.

mod action;
mod backoff;
mod config;
mod discovery;
mod error;
mod exchanged;
mod manager;
mod metrics;
mod peers_file;
mod policy;
mod refusal;
mod scores;

pub use action::{Action, ActionKind, CloseReason, DialFailure, DialOutcome};
pub use backoff::Backoff;
pub use config::{
    BACKOFF_BASE_MS, BANNED_RETRY_DELAY_MS, CHANNEL_CAPACITY, CONNECTIVITY_CHECK_INTERVAL_MS,
    Config, DISCOVERY_FILE_INTERVAL_MS, FULL_RETRY_DELAY_MS, MAX_BACKOFF_JITTER_MS, MAX_BACKOFF_MS,
    MAX_EXCHANGED_PEERS, MAX_OUTBOUND_CONNECTIONS, MAX_REFUSAL_DELAY_MS, MIN_OUTBOUND_CONNECTIONS,
    MISMATCH_RETRY_DELAY_MS, NetworkKind, TARGET_PEERS_HIGH, TARGET_PEERS_LOW,
};
pub use discovery::{DiscoveredPeer, DiscoveredSet, DiscoverySource};
pub use error::Error;
pub use exchanged::ExchangedPeers;
pub use manager::{ConnectivityHandle, ConnectivityManager, ExitReason, PeerEvent};
pub use metrics::{FileError, Metrics};
pub use peers_file::FileSource;
pub use policy::{Outcome, Policy, Provenance};
pub use refusal::{RemoteRefusal, refusal_delay};
pub use scores::{MIN_WEIGHTED_RTT, NoScores, PeerScores, rtt_weight};
