//! The admin API of `peerlane node` (`--admin HOST:PORT`): a small HTTP/1 server with
//!
//! - `GET /metrics`: the node's metrics registry in the Prometheus text format;
//! - `GET /peers`: the connected peers as a JSON array: peer id, network, address, origin,
//!   role, negotiated protocols, connection id, connected since (unix ms and RFC 3339), the
//!   last health-check round-trip time (`rtt_us`, null before the first pong) and the bytes
//!   received and sent on the wire over the current connection;
//! - `POST /peers` with `{"peer_id": "…", "address": "/…/noise-ik/<key>/handshake/0"}`: dials;
//! - `DELETE /peers/<peer id>`: disconnects (404 if not connected);
//! - `GET /bans`: the banned peer ids as a JSON array;
//! - `POST /bans` with `{"peer_id": "…"}`: bans the peer (disconnecting it if connected);
//! - `DELETE /bans/<peer id>`: lifts the ban (404 if not banned).
//!
//! Errors are 4xx with a one-line `{"error": "…"}` body: 400 for bad input (a body that is not
//! the expected JSON, a peer id or address that does not parse), 404 for a peer that is not
//! connected, 409 for a dial to a connected peer, 422 for a dial that failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use netcore::{NetworkAddress, PeerId};
use peerlane::{Error, Network};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the handlers share.
#[derive(Clone)]
struct AdminState {
    network: Arc<Network>,
    registry: Arc<Registry>,
}

/// The body of `POST /peers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DialRequest {
    peer_id: PeerId,
    address: NetworkAddress,
}

/// The body of `POST /bans`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    peer_id: PeerId,
}

/// A `POST` body: bad input (not JSON, a missing or unknown field, a value that does not
/// parse) is a 400 with the reason, whatever status axum would give it.
type Body<T> = Result<Json<T>, JsonRejection>;

/// A `<peer id>` path segment; one that does not parse is a 400 with the reason.
type PeerPath = Result<Path<PeerId>, PathRejection>;

/// The request's value, or the 400 response for it.
fn input<T>(extracted: Result<T, impl std::fmt::Display>, what: &str) -> Result<T, Box<Response>> {
    extracted.map_err(|rejection| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("{what}: {rejection}"),
        ))
    })
}

/// Binds `addr`; returns the listener and the address it got (port 0 picks a free one).
pub(crate) async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the admin address {addr}"))?;
    let local = listener.local_addr().context("admin listener address")?;
    Ok((listener, local))
}

/// Serves the admin API on `listener` until `shutdown` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    network: Arc<Network>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/peers", get(peers).post(dial))
        .route("/peers/{peer_id}", delete(disconnect))
        .route("/bans", get(bans).post(ban))
        .route("/bans/{peer_id}", delete(unban))
        .with_state(AdminState { network, registry });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// A one-line JSON error.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let message = message.to_string().replace('\n', " ");
    (status, Json(json!({ "error": message }))).into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, err);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn peers(State(state): State<AdminState>) -> Json<Vec<Value>> {
    let mut peers = state
        .network
        .peers_and_metadata()
        .connected_peers_with_stats();
    peers.sort_by_key(|(peer, _, _)| *peer);
    let peers = peers
        .into_iter()
        .map(|(peer, metadata, stats)| {
            let since_ms = unix_millis(stats.connected_since);
            json!({
                "peer_id": peer.peer_id.to_string(),
                "network": peer.network_id.to_string(),
                "remote_address": metadata.remote_addr.to_string(),
                "origin": metadata.origin.to_string(),
                "role": metadata.role.as_str(),
                "protocols": metadata
                    .application_protocols
                    .iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>(),
                "connection_id": metadata.connection_id.0,
                "connected_since_unix_ms": since_ms,
                "connected_since": humantime::format_rfc3339_millis(stats.connected_since).to_string(),
                "rtt_us": stats
                    .last_rtt
                    .map(|rtt| u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
                "bytes_received": stats.bytes_received,
                "bytes_sent": stats.bytes_sent,
            })
        })
        .collect();
    Json(peers)
}

/// Milliseconds since the unix epoch (0 for a time before it).
fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

async fn dial(State(state): State<AdminState>, body: Body<DialRequest>) -> Response {
    let Json(DialRequest { peer_id, address }) = match input(body, "body") {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match state.network.dial(peer_id, address).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "connected": peer_id.to_string() })),
        )
            .into_response(),
        Err(err @ Error::AlreadyConnected { .. }) => error(StatusCode::CONFLICT, err),
        Err(err @ (Error::UnsupportedHandshakeVersion { .. } | Error::MissingNoiseKey { .. })) => {
            error(StatusCode::BAD_REQUEST, err)
        }
        Err(err) => error(StatusCode::UNPROCESSABLE_ENTITY, err),
    }
}

async fn disconnect(State(state): State<AdminState>, peer_id: PeerPath) -> Response {
    let Path(peer_id) = match input(peer_id, "peer id") {
        Ok(peer_id) => peer_id,
        Err(response) => return *response,
    };
    match state.network.disconnect(peer_id).await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "disconnected": peer_id.to_string() })),
        )
            .into_response(),
        Err(err @ Error::NotConnected { .. }) => error(StatusCode::NOT_FOUND, err),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err),
    }
}

async fn bans(State(state): State<AdminState>) -> Json<Vec<String>> {
    Json(
        state
            .network
            .banned()
            .into_iter()
            .map(|peer_id| peer_id.to_string())
            .collect(),
    )
}

async fn ban(State(state): State<AdminState>, body: Body<BanRequest>) -> Response {
    let Json(BanRequest { peer_id }) = match input(body, "body") {
        Ok(body) => body,
        Err(response) => return *response,
    };
    match state.network.ban(peer_id).await {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({ "banned": peer_id.to_string() })),
        )
            .into_response(),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err),
    }
}

async fn unban(State(state): State<AdminState>, peer_id: PeerPath) -> Response {
    let Path(peer_id) = match input(peer_id, "peer id") {
        Ok(peer_id) => peer_id,
        Err(response) => return *response,
    };
    if state.network.unban(peer_id) {
        (
            StatusCode::OK,
            Json(json!({ "unbanned": peer_id.to_string() })),
        )
            .into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("{peer_id} is not banned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connect times are unix milliseconds and RFC 3339 UTC with milliseconds.
    #[test]
    fn connect_times_format_as_unix_ms_and_rfc3339() {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(1_795_248_062_345);
        assert_eq!(unix_millis(time), 1_795_248_062_345);
        assert_eq!(
            humantime::format_rfc3339_millis(time).to_string(),
            "2026-11-21T08:01:02.345Z"
        );
        assert_eq!(
            unix_millis(UNIX_EPOCH + std::time::Duration::from_millis(7)),
            7
        );
    }
}
