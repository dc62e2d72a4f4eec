//! [`Error`]: everything that can go wrong in the connectivity manager.
//!
//! None of these costs a connection: the manager decides about connections through
//! [`Action`](crate::Action)s, never through errors. A discovery file that cannot be read or
//! parsed is logged and counted, and the last good set stays in force.

use std::io;
use std::path::PathBuf;

/// Errors from configuration, the discovery file and the manager's handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) setting has a value the manager cannot run with, such as a
    /// zero interval or a zero channel capacity. Returned by
    /// [`ConnectivityManager::new`](crate::ConnectivityManager::new).
    #[error("connectivity config: {setting} {reason}")]
    InvalidConfig {
        /// The setting's name, as in the config file.
        setting: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },

    /// The discovery file could not be read (missing, unreadable, not UTF-8).
    #[error("connectivity discovery file: cannot read {}", path.display())]
    ReadPeersFile {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },

    /// The discovery file was read but is not a valid peers file (TOML syntax, an unknown
    /// field, a bad PeerId, address, key or role).
    #[error("connectivity discovery file: cannot parse {}", path.display())]
    ParsePeersFile {
        /// The file.
        path: PathBuf,
        /// What the parser reported, with line and column.
        #[source]
        source: toml::de::Error,
    },

    /// The manager has stopped (shut down, or its action receiver was dropped), so a
    /// [`PeerEvent`](crate::PeerEvent) could not be delivered. Not emitted while
    /// the manager runs, even when its event queue is full: `send` waits, `try_send` reports
    /// [`Error::EventQueueFull`].
    #[error("connectivity manager: stopped, connection event not delivered")]
    ManagerStopped,

    /// [`ConnectivityHandle::try_send`](crate::ConnectivityHandle::try_send) found the event
    /// queue full. Only `try_send` reports this; `send` waits for room instead.
    #[error("connectivity manager: event queue full ({capacity} events)")]
    EventQueueFull {
        /// The queue's capacity ([`Config::connection_events_capacity`](crate::Config)).
        capacity: usize,
    },
}
