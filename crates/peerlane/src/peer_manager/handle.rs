//! The peer manager's inputs: [`PeerManagerHandle`] (dial, disconnect) and its [`Request`]s,
//! the [`NewConnection`]s from the listener and dials, and the [`Channels`] that carry them.

use netcore::{NetworkAddress, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::disconnect_notice::DisconnectCode;
use crate::error::Error;
use crate::transport::NetworkConnection;

/// Requests a [`PeerManagerHandle`] can queue: how many may wait for the actor. Senders wait
/// (asynchronously) when it is full.
pub(crate) const REQUEST_CAPACITY: usize = 64;

/// Connections that finished set-up and wait for the actor (from the listener and from dials).
/// Their set-up tasks wait when it is full; the listener goes on accepting (a finished set-up
/// no longer counts towards its cap).
pub(crate) const NEW_CONNECTION_CAPACITY: usize = 64;

/// A cloneable handle on a [`PeerManager`]: dial and disconnect.
#[derive(Clone, Debug)]
pub(crate) struct PeerManagerHandle {
    requests_tx: mpsc::Sender<Request>,
}

/// What a [`PeerManagerHandle`] asks of the actor.
#[derive(Debug)]
pub(crate) enum Request {
    /// Dial `peer_id` at `addr`; reply once it is connected or the dial failed. `managed`
    /// when the connectivity manager asked for it.
    Dial {
        peer_id: PeerId,
        addr: NetworkAddress,
        managed: bool,
        reply_tx: oneshot::Sender<Result<(), Error>>,
    },
    /// Close the connection to `peer_id`, for `reason` (in the log); reply once it is gone.
    Disconnect {
        peer_id: PeerId,
        reason: &'static str,
        /// Sent to the peer on protocol 64 before the close, if it speaks it.
        notice: Option<DisconnectCode>,
        reply_tx: oneshot::Sender<Result<(), Error>>,
    },
}

/// A connection that finished set-up, with the dialer's reply when we dialed it.
pub(crate) struct NewConnection {
    pub(crate) connection: NetworkConnection,
    pub(crate) reply_tx: Option<oneshot::Sender<Result<(), Error>>>,
    /// Dialed for the connectivity manager.
    pub(crate) managed: bool,
}

/// The actor's inputs, made before the actor so that handles can exist first.
pub(crate) struct Channels {
    pub(super) requests_rx: mpsc::Receiver<Request>,
    pub(super) new_connections_tx: mpsc::Sender<NewConnection>,
    pub(super) new_connections_rx: mpsc::Receiver<NewConnection>,
}

impl PeerManagerHandle {
    /// Dials `peer_id` at `addr` and waits until the connection is registered, or the dial
    /// failed.
    ///
    /// Cancel-safe in that dropping the future abandons only the wait: the dial goes on, and a
    /// connection it makes is registered.
    pub(crate) async fn dial(&self, peer_id: PeerId, addr: NetworkAddress) -> Result<(), Error> {
        self.dial_inner(peer_id, addr, false).await
    }

    /// [`dial`](Self::dial) for the connectivity manager: the connection is reported to it
    /// whoever the peer is, and a connection the manager did not know about yet counts as a
    /// successful dial.
    pub(crate) async fn dial_managed(
        &self,
        peer_id: PeerId,
        addr: NetworkAddress,
    ) -> Result<(), Error> {
        self.dial_inner(peer_id, addr, true).await
    }

    async fn dial_inner(
        &self,
        peer_id: PeerId,
        addr: NetworkAddress,
        managed: bool,
    ) -> Result<(), Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.request(Request::Dial {
            peer_id,
            addr,
            managed,
            reply_tx,
        })
        .await?;
        reply_rx.await.unwrap_or(Err(Error::ShutDown))
    }

    /// Closes the connection to `peer_id` and waits until it is gone.
    pub(crate) async fn disconnect(&self, peer_id: PeerId) -> Result<(), Error> {
        self.disconnect_because(peer_id, "requested", None).await
    }

    /// Closes the connection to `peer_id`, logging `reason`, and waits until it is gone.
    /// With a `notice`, the peer is told why first (protocol 64, if it speaks it).
    pub(crate) async fn disconnect_because(
        &self,
        peer_id: PeerId,
        reason: &'static str,
        notice: Option<DisconnectCode>,
    ) -> Result<(), Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.request(Request::Disconnect {
            peer_id,
            reason,
            notice,
            reply_tx,
        })
        .await?;
        reply_rx.await.unwrap_or(Err(Error::ShutDown))
    }

    async fn request(&self, request: Request) -> Result<(), Error> {
        self.requests_tx
            .send(request)
            .await
            .map_err(|_closed| Error::ShutDown)
    }
}

impl Channels {
    /// The actor's channels and a handle on them.
    pub(crate) fn new() -> (Self, PeerManagerHandle) {
        let (requests_tx, requests_rx) = mpsc::channel(REQUEST_CAPACITY);
        let (new_connections_tx, new_connections_rx) = mpsc::channel(NEW_CONNECTION_CAPACITY);
        let channels = Self {
            requests_rx,
            new_connections_tx,
            new_connections_rx,
        };
        (channels, PeerManagerHandle { requests_tx })
    }

    /// Where the listener hands set-up connections to.
    pub(crate) fn new_connections_tx(&self) -> mpsc::Sender<NewConnection> {
        self.new_connections_tx.clone()
    }
}
