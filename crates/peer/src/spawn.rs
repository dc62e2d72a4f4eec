//! [`spawn`]: starts one connection's peer, its reader and writer tasks around the state they
//! share, and hands back the [`PeerHandle`] that drives them.
//!
//! ```text
//! PeerHandle ─push─► Lanes (high | low) ─► writer task ─► socket
//! socket ─► reader task ─► Reassembler ─► InboundRouter (DirectSend, RpcRequest + responder)
//!                                      └► RpcTables (RpcResponse → the waiting caller)
//! ```

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug};

use crate::config::Config;
use crate::connection::Connection;
use crate::error::ErrorChain;
use crate::handle::PeerHandle;
use crate::inbound::InboundRouter;
use crate::lifecycle::TaskExit;
use crate::metrics::Metrics;
use crate::reader::Reader;
use crate::shared::Shared;
use crate::writer::Writer;

/// Starts the reader and writer tasks of `connection` on `tracker`, and returns the handle
/// that drives them.
///
/// The tasks run inside a span carrying `peer`, `conn_id` and `origin`. They end when the
/// handle disconnects (or the last handle is dropped), `shutdown` is cancelled, the remote
/// closes the connection, or an error costs it (see the crate docs); then the writer has up to
/// `config.writer_close_timeout` to flush. `tracker.wait()` returns only after both tasks have
/// ended.
///
/// Must be called within a tokio runtime.
///
/// # Panics
///
/// If `config` fails [`Config::validate`]: check it once when the configuration is loaded.
pub fn spawn<S>(
    config: Config,
    connection: Connection<S>,
    router: Arc<dyn InboundRouter>,
    metrics: Metrics,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> PeerHandle
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if let Err(err) = config.validate() {
        panic!("peer::spawn: {}", ErrorChain(&err));
    }
    // `validate` checked the stream limits just above.
    let limits = config.stream_limits().unwrap_or_default();
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
        metrics,
        span.clone(),
        shutdown.child_token(),
    ));
    let (read_half, write_half) = tokio::io::split(socket);
    // Once both tasks have ended, normally or not, the peer is closed for good.
    let exit = TaskExit::new({
        let shared = shared.clone();
        move || shared.finish()
    });
    let writer = Writer::new(shared.clone(), write_half, limits, exit.clone());
    let reader = Reader::new(shared.clone(), read_half, router, limits, exit);
    debug!(parent: &span, "peer started");
    tracker.spawn(writer.run().instrument(span.clone()));
    tracker.spawn(reader.run().instrument(span));
    PeerHandle::new(shared)
}
