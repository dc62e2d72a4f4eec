//! [`DisconnectReason`]: why a connection ended, and how the errors that end one map to it.

use std::fmt;
use std::io;

/// Why a connection ended: the value of [`PeerHandle::closed`](crate::PeerHandle::closed) and
/// the `reason` label of `peerlane_peer_disconnects_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// [`PeerHandle::disconnect`](crate::PeerHandle::disconnect) was called, or the last
    /// handle was dropped.
    Requested,
    /// The node's shutdown token was cancelled.
    Shutdown,
    /// The remote closed the connection cleanly, between two frames.
    RemoteClosed,
    /// The connection ended inside a frame (or a Noise frame).
    TruncatedFrame,
    /// The remote announced a frame above `max_frame_size`.
    FrameTooLarge,
    /// A Noise frame failed to decrypt: tampering, corruption or a broken peer. The session
    /// cannot continue.
    DecryptFailed,
    /// Reading or writing the socket failed (reset, broken pipe, ...).
    Io,
    /// An inbound stream's last fragment did not arrive within `stream_reassembly_timeout` of
    /// its header, whatever else the remote sent meanwhile.
    StreamTimeout,
    /// An inbound stream piece would have taken the bytes held in unfinished streams, all
    /// connections together, over `max_stream_bytes_in_flight`.
    StreamBudgetExceeded,
    /// A stream header declared more fragments than the peer's maximum message size needs
    /// (`max_untrusted_message_size` for peers outside the trusted set, `max_message_size`
    /// for the others), or its pieces added up to more: refused before it was held.
    MessageTooLarge,
    /// The remote kept sending over its rate limits (more than `rate_limit.abuse_max_drops`
    /// messages dropped within `rate_limit.abuse_window`). The facade bans it for
    /// `rate_limit.ban_duration`.
    RateLimited,
}

impl DisconnectReason {
    /// Every reason: the `reason` series of `peerlane_peer_disconnects_total` exist at 0 from
    /// the start.
    pub const ALL: [Self; 11] = [
        Self::Requested,
        Self::Shutdown,
        Self::RemoteClosed,
        Self::TruncatedFrame,
        Self::FrameTooLarge,
        Self::DecryptFailed,
        Self::Io,
        Self::StreamTimeout,
        Self::StreamBudgetExceeded,
        Self::MessageTooLarge,
        Self::RateLimited,
    ];

    /// The snake_case name, also the metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Shutdown => "shutdown",
            Self::RemoteClosed => "remote_closed",
            Self::TruncatedFrame => "truncated_frame",
            Self::FrameTooLarge => "frame_too_large",
            Self::DecryptFailed => "decrypt_failed",
            Self::Io => "io",
            Self::StreamTimeout => "stream_timeout",
            Self::StreamBudgetExceeded => "stream_budget_exceeded",
            Self::MessageTooLarge => "message_too_large",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Whether we ended the connection ourselves ([`Requested`](Self::Requested) or
    /// [`Shutdown`](Self::Shutdown)) rather than the remote or the network.
    pub const fn is_local(self) -> bool {
        matches!(self, Self::Requested | Self::Shutdown)
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a fatal read error ends the connection.
pub(crate) fn read_disconnect_reason(err: &wire::Error) -> DisconnectReason {
    match err {
        wire::Error::Framing(netcore::Error::FrameTooLarge { .. }) => {
            DisconnectReason::FrameTooLarge
        }
        wire::Error::Framing(netcore::Error::TruncatedFrame { .. }) => {
            DisconnectReason::TruncatedFrame
        }
        wire::Error::Framing(netcore::Error::Io(io)) | wire::Error::Io(io) => {
            io_disconnect_reason(io)
        }
        _ => DisconnectReason::Io,
    }
}

/// Why a failed write ends the connection.
pub(crate) fn write_disconnect_reason(err: &wire::Error) -> DisconnectReason {
    match err {
        wire::Error::Io(io) | wire::Error::Framing(netcore::Error::Io(io)) => {
            io_disconnect_reason(io)
        }
        _ => DisconnectReason::Io,
    }
}

/// Why an I/O error from the (Noise) socket ends the connection.
fn io_disconnect_reason(err: &io::Error) -> DisconnectReason {
    match noise::Error::from_io(err) {
        Some(noise::Error::Decrypt { .. } | noise::Error::Poisoned) => {
            DisconnectReason::DecryptFailed
        }
        _ if err.kind() == io::ErrorKind::UnexpectedEof => DisconnectReason::TruncatedFrame,
        _ => DisconnectReason::Io,
    }
}
