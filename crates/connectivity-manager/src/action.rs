//! What the policy and the facade say to each other: the [`Action`]s the policy asks for, why
//! a dial failed ([`DialFailure`]) and how a dial ended ([`DialOutcome`]). Plain data; the
//! `as_str` names are the metric label values.

use netcore::{NetworkAddress, PeerId};

/// What the policy asks the facade to do. The facade carries out each action and reports what
/// happened through the [`Policy`]'s `handle_*` methods (through [`PeerEvent`]s when the
/// [`ConnectivityManager`] drives the policy).
///
/// [`Policy`]: crate::Policy
/// [`PeerEvent`]: crate::PeerEvent
/// [`ConnectivityManager`]: crate::ConnectivityManager
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Dial `peer_id` at `addr` (the full address, `/noise-ik/..` suffix included). The
    /// facade reports how it ended (see the [`Policy`](crate::Policy)'s calling protocol),
    /// unless it is cancelled first.
    Dial {
        /// Who to dial.
        peer_id: PeerId,
        /// Where.
        addr: NetworkAddress,
    },
    /// Abandon the dial to `peer_id`: the peer stopped being eligible. The policy has already
    /// forgotten the dial; a result that still arrives for it is ignored, and a connection it
    /// still produces is closed as stale if the peer is no longer trusted.
    CancelDial {
        /// Whose dial to abandon.
        peer_id: PeerId,
    },
    /// Close the connection to `peer_id`. The facade reports the disconnection when it is
    /// done.
    Disconnect {
        /// Whose connection to close.
        peer_id: PeerId,
        /// Why.
        reason: CloseReason,
    },
}

impl Action {
    /// The peer the action is about.
    pub const fn peer_id(&self) -> PeerId {
        match self {
            Self::Dial { peer_id, .. }
            | Self::CancelDial { peer_id }
            | Self::Disconnect { peer_id, .. } => *peer_id,
        }
    }

    /// The action's kind, without its data.
    pub const fn kind(&self) -> ActionKind {
        match self {
            Self::Dial { .. } => ActionKind::Dial,
            Self::CancelDial { .. } => ActionKind::CancelDial,
            Self::Disconnect { .. } => ActionKind::Disconnect,
        }
    }
}

/// The kind of an [`Action`]: the `action` label of
/// `peerlane_connectivity_actions_dropped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// [`Action::Dial`] (`dial`).
    Dial,
    /// [`Action::CancelDial`] (`cancel_dial`).
    CancelDial,
    /// [`Action::Disconnect`] (`disconnect`).
    Disconnect,
}

impl ActionKind {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dial => "dial",
            Self::CancelDial => "cancel_dial",
            Self::Disconnect => "disconnect",
        }
    }
}

/// Why the policy asks for a connection to be closed (the `reason` of [`Action::Disconnect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer left the trusted set (no discovery source lists it with a key any more).
    Stale,
    /// More peers are connected than the target range's high mark, and this inbound peer
    /// scored worst (`over_target`).
    OverTarget,
}

impl CloseReason {
    /// `"stale"`: for logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::OverTarget => "over_target",
        }
    }
}

/// Why a dial failed, as the facade reports it. The policy backs off after every failure
/// except [`DialFailure::AlreadyConnected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DialFailure {
    /// Connecting failed: refused, unreachable, name resolution, connect timeout.
    Unreachable,
    /// The connection set-up (Noise and AptosNet handshakes) did not finish in time.
    Timeout,
    /// The Noise or AptosNet handshake failed or was rejected.
    Handshake,
    /// The facade dropped our dial because the peer is already connected (it dialed us at
    /// the same time and won the tie). Not the peer's fault: no backoff.
    AlreadyConnected,
    /// Anything else.
    Other,
}

impl DialFailure {
    /// The lowercase name: for logs and the `result` label of
    /// `peerlane_connectivity_dials_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Handshake => "handshake",
            Self::AlreadyConnected => "already_connected",
            Self::Other => "other",
        }
    }
}

/// How a dial ended: the `result` label of `peerlane_connectivity_dials_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialOutcome {
    /// The dial produced a connection (`ok`).
    Connected,
    /// The facade reported a failure (the failure's [`DialFailure::as_str`]).
    Failed(DialFailure),
    /// We cancelled it because the peer stopped being eligible (`cancelled`).
    Cancelled,
}

impl DialOutcome {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "ok",
            Self::Failed(failure) => failure.as_str(),
            Self::Cancelled => "cancelled",
        }
    }
}
