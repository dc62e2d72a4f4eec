//! [`spawn`]: starts one connection's peer, its reader and writer tasks around the state they
//! share, and hands back the [`PeerHandle`] that drives them.
//!
//! ```text
//! PeerHandle ─push─► Lanes (high | low) ─► writer task ─► socket
//! socket ─► reader task ─► Reassembler ─► InboundRouter (DirectSend, RpcRequest + responder)
//!                                      └► RpcTables (RpcResponse → the waiting caller)
//! ```

use std::sync::Arc;

use noise::SplitSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug};

use crate::config::Config;
use crate::connection::Connection;
use crate::error::ErrorChain;
use crate::handle::PeerHandle;
use crate::inbound::InboundRouter;
use crate::inbound_streams::InboundStreams;
use crate::lifecycle::TaskExit;
use crate::metrics::Metrics;
use crate::reader::Reader;
use crate::shared::Shared;
use crate::stream_budget::StreamBudget;
use crate::writer::Writer;

/// Starts the reader and writer tasks of `connection` on `tracker`, and returns the handle
/// that drives them.
///
/// Inbound streams are held to the remote's maximum message size for its role
/// ([`Config::max_inbound_message_size`]) and to `config.stream_reassembly_timeout`, and their
/// bytes are taken from `stream_budget`, shared by all the connections it should bound
/// together (the facade gives one to every connection of a network).
///
/// The tasks run inside a span carrying `peer`, `conn_id` and `origin`. They end when the
/// handle disconnects (or the last handle is dropped), `shutdown` is cancelled, the remote
/// closes the connection, or an error costs it (see the crate docs); then the writer has up to
/// `config.writer_close_timeout` to flush. `tracker.wait()` returns only after both tasks have
/// ended.
///
/// `config` and `metrics` may be given by value or as an `Arc` shared by many connections
/// (as the facade does): a copy per connection is memory every idle connection holds.
///
/// Must be called within a tokio runtime.
///
/// # Panics
///
/// If `config` fails [`Config::validate`]: check it once when the configuration is loaded.
pub fn spawn<S>(
    config: impl Into<Arc<Config>>,
    connection: Connection<S>,
    router: Arc<dyn InboundRouter>,
    metrics: impl Into<Arc<Metrics>>,
    stream_budget: Arc<StreamBudget>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> PeerHandle
where
    S: SplitSocket + Send + Unpin + 'static,
{
    let config = config.into();
    if let Err(err) = config.validate() {
        panic!("peer::spawn: {}", ErrorChain(&err));
    }
    // `validate` checked the stream limits just above.
    let limits = config.stream_limits().unwrap_or_default();
    // Valid too: `validate` checked that the untrusted maximum is at least a frame.
    let inbound_limits = config
        .inbound_stream_limits(connection.metadata.role)
        .unwrap_or(limits);
    let reassembly_timeout = config.stream_reassembly_timeout;
    let Connection { metadata, socket } = connection;
    let span = tracing::info_span!(
        "peer",
        peer = %metadata.remote_peer_id.short_str(),
        conn_id = %metadata.connection_id,
        origin = metadata.origin.as_str(),
    );
    let shared = Arc::new(Shared::new(
        config,
        limits,
        metadata,
        metrics.into(),
        span.clone(),
        shutdown.child_token(),
    ));
    // Halves that share no lock (a `NoiseStream`'s own, over TCP's owned halves): the reader
    // and the writer never wait for each other.
    let (read_half, write_half) = socket.into_split();
    // Once both tasks have ended, normally or not, the peer is closed for good.
    let exit = TaskExit::new({
        let shared = shared.clone();
        move || shared.finish()
    });
    let writer = Writer::new(shared.clone(), write_half, limits, exit.clone());
    let streams = InboundStreams::new(
        inbound_limits,
        reassembly_timeout,
        stream_budget,
        shared.metrics.clone(),
    );
    let reader = Reader::new(shared.clone(), read_half, router, streams, exit);
    debug!(parent: &span, "peer started");
    tracker.spawn(writer.run().instrument(span.clone()));
    tracker.spawn(reader.run().instrument(span));
    PeerHandle::new(shared)
}
