//! The admin API's accept loop: the router served on hyper's HTTP/1 connections, with what
//! `axum::serve` does not offer: a header-read timeout and a limit on connections.
//!
//! - A connection has `header_timeout` to send a complete request head, on connecting and
//!   again between keep-alive requests; then it is closed (slowloris, idle keep-alive).
//! - At most `max_connections` are served at once; one more is answered 503 (best effort, if
//!   the socket takes it at once) and closed right after accept, rather than queued.
//!
//! Both are counted in `peerlane_admin_connections_closed_total`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::metrics::{AdminMetrics, Closed};

/// What a connection over the limit gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: application/json\r\ncontent-length: 33\r\n\r\n{\"error\": \"too many connections\"}";

/// How long accepting pauses after an error that is not the connection's own (out of file
/// descriptors, say), so the loop does not spin while it lasts.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The server's limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The time a connection has to send a complete request head.
    pub(crate) header_timeout: Duration,
    /// The most connections served at once.
    pub(crate) max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` is cancelled; then connections finish the
/// request in progress (for up to `header_timeout`) and the rest are dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: AdminMetrics,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::warn!(%err, "admin API: accept failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.closed(Closed::ConnectionLimit);
            // Best effort: a socket that does not take it at once is closed all the same.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            match result {
                Err(err) if err.is_timeout() => metrics.closed(Closed::HeaderTimeout),
                Err(err) => tracing::debug!(%err, "admin API connection failed"),
                Ok(()) => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    let finish = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(limits.header_timeout, finish).await;
    // Waits for the aborted ones too, so that no handler holds the network any more.
    connections.shutdown().await;
    Ok(())
}

/// Errors of one connection, not of the listener: accepting goes on at once.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
