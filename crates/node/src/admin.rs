//! The admin API of `peerlane node` (`--admin HOST:PORT`): a small HTTP/1 server with
//!
//! - `GET /status`: the node at a glance as a JSON object: peer id, network, chain id,
//!   version, uptime, listen and advertised addresses, height and rate, whether it syncs,
//!   validators connected / expected / needed, peers by role, and whether it is healthy;
//! - `GET /health`: 200 `{"healthy": true}`, or 503 `{"healthy": false, "reason": "…"}` (no
//!   status yet, consensus without a quorum, no peer connected);
//! - `GET /metrics`: the node's metrics registry in the Prometheus text format;
//! - `GET /peers`: the connected peers as a JSON array: peer id, network, address, origin,
//!   role, negotiated protocols, connection id, connected since (unix ms and RFC 3339), the
//!   last health-check round-trip time (`rtt_us`, null before the first pong) and the bytes
//!   received and sent on the wire over the current connection;
//! - `POST /peers` with `{"peer_id": "…", "address": "/…/noise-ik/<key>/handshake/0"}`: dials;
//! - `DELETE /peers/<peer id>`: disconnects (404 if not connected);
//! - `GET /bans`: the banned peers as a JSON array of `{"peer_id", "reason", "until"}` objects
//!   (`reason`: `manual` for the operator's bans, `rate_limited` for the network's own
//!   temporary bans of flooding peers, or the stored reason of a ban restored from
//!   `node.data_dir`; `until`: when the ban lifts itself, RFC 3339, or null);
//! - `POST /bans` with `{"peer_id": "…"}`: bans the peer (disconnecting it if connected); with
//!   `node.data_dir` the answer comes once the ban is on disk, and so for the other changes;
//! - `DELETE /bans/<peer id>`: lifts the ban (404 if not banned);
//! - `GET /bans/ips`: the banned IPs and CIDR prefixes as a JSON array (`"10.1.2.0/24"`; a bare
//!   address shows as a /32 or /128);
//! - `GET /bans/ips/details`: the same as `{"ip", "until"}` objects (`until`: when the ban lifts
//!   itself, RFC 3339, or null);
//! - `POST /bans/ips` with `{"ip": "10.1.2.3"}` or `{"ip": "10.1.2.0/24"}`, and optionally
//!   `"duration_secs": N` (the ban then lifts itself after N seconds, also across restarts
//!   with `node.data_dir`): bans the address or prefix: its sockets are closed at accept
//!   (connections already open stay: ban their peers);
//! - `DELETE /bans/ips/<ip or prefix>` (e.g. `/bans/ips/10.1.2.0/24`): lifts that ban (404 if
//!   not banned);
//! - `GET /routing?offset=N&limit=M`: the routing state as a JSON object: whether routing
//!   runs, edge count, reachable peers, routing neighbours, the last next-hop recompute (unix
//!   ms and RFC 3339), and one page of routes (`target`, `distance`, `next_hops`), sorted by
//!   target, `limit` at most 1,000 (default 100).
//!
//! Errors are 4xx with a one-line `{"error": "…"}` body: 400 for bad input (a body that is not
//! the expected JSON, a peer id or address that does not parse, an address without
//! `/noise-ik/<key>/handshake/0`), 404 for a peer that is not connected, 409 for a dial to a
//! connected peer, 415 for a body that is not `application/json`, 422 for a dial that failed,
//! with its cause (`dial failed: set-up: transport failed: …: Connection refused`): whoever
//! passes the guard below is the operator, and also counted in
//! `peerlane_admin_dial_failures_total{reason}`; 503 for a dial cut short by the shutdown.
//!
//! Who may use it ([`guard`]): on a loopback bind only requests naming a loopback host (403
//! otherwise, against DNS rebinding); with a token ([`settings`]: required on any other bind)
//! only requests with `Authorization: Bearer <token>` (401 otherwise). The accept loop
//! ([`server`]) closes connections that do not send a request head in time and refuses those
//! over the connection limit. [`metrics`] counts all of it.

mod guard;
mod metrics;
mod server;
mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use netcore::{NetworkAddress, PeerId, SharedLogLimiter};
use peerlane::{Error, IpPrefix, Network};
use tokio::sync::watch;
use wire::NetworkId;

use crate::node_metrics::NodeMetrics;
use crate::node_store::{Change, StoreWriter, ip_ban_key};
use crate::status::Status;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::{Value, json};
use store::{BanReason, PeerChange};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(crate) use self::metrics::AdminMetrics;
use self::metrics::{DialFailure, Rejection};
pub(crate) use self::settings::{AdminConfig, AdminSettings, TOKEN_ENV};

/// At most one failed-dial log line per this long.
const DIAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What `GET /status` tells besides the network's figures.
#[derive(Clone)]
pub(crate) struct About {
    pub(crate) peer_id: PeerId,
    pub(crate) network_id: NetworkId,
    pub(crate) chain_id: u8,
    pub(crate) version: &'static str,
    pub(crate) started: tokio::time::Instant,
    pub(crate) listen_address: String,
    pub(crate) advertised_address: String,
    /// The status task's latest status.
    pub(crate) status: watch::Receiver<Status>,
    /// Refreshed on each `/metrics` scrape.
    pub(crate) node_metrics: NodeMetrics,
}

/// Where the admin API's bans go besides the network: the store, and why each peer is banned.
#[derive(Debug, Default)]
pub(crate) struct BanRecords {
    /// The peer store, with `node.data_dir`: bans are written to it before they are answered.
    pub(crate) store: Option<StoreWriter>,
    /// The reasons of the bans restored from the store.
    pub(crate) reasons: HashMap<PeerId, BanReason>,
}

/// What the handlers share.
#[derive(Clone)]
struct AdminState {
    network: Arc<Network>,
    registry: Arc<Registry>,
    metrics: AdminMetrics,
    about: About,
    /// Cancelled at shutdown: in-flight dials end with a 503 then.
    shutdown: CancellationToken,
    /// Rate limit of the failed-dial log lines.
    dial_log: Arc<SharedLogLimiter>,
    /// The peer store, with `node.data_dir`: bans are written to it.
    store: Option<StoreWriter>,
    /// The reasons of the operator's bans and of those restored from the store; a banned peer
    /// not in it was banned by the network itself, for flooding.
    ban_reasons: Arc<std::sync::Mutex<HashMap<PeerId, BanReason>>>,
}

/// What the request checks share.
#[derive(Clone)]
struct Access {
    guard: guard::Guard,
    metrics: AdminMetrics,
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

/// The body of `POST /bans/ips`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpBanRequest {
    ip: IpPrefix,
    /// How long the ban lasts, in seconds; absent: until lifted.
    #[serde(default)]
    duration_secs: Option<u64>,
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

/// The request's JSON body, or the error response: 415 for a body not sent as
/// `application/json`, 400 for one that is not the expected JSON.
fn json_body<T>(body: Body<T>) -> Result<Json<T>, Box<Response>> {
    body.map_err(|rejection| {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Box::new(error(status, format!("body: {rejection}")))
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

/// Serves the admin API on `listener` (bound to `settings.address`) until `shutdown` is
/// cancelled.
#[expect(
    clippy::too_many_arguments,
    reason = "each is a separate part of the node the handlers use; called once"
)]
pub(crate) async fn serve(
    listener: TcpListener,
    settings: AdminSettings,
    network: Arc<Network>,
    registry: Arc<Registry>,
    metrics: AdminMetrics,
    about: About,
    ban_records: BanRecords,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let access = Access {
        guard: guard::Guard::new(settings.address.ip(), settings.token),
        metrics: metrics.clone(),
    };
    let app = Router::new()
        .route("/status", get(status))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/peers", get(peers).post(dial))
        .route("/peers/{peer_id}", delete(disconnect))
        .route("/bans", get(bans).post(ban))
        .route("/bans/{peer_id}", delete(unban))
        .route("/bans/ips", get(ip_bans).post(ban_ip))
        .route("/bans/ips/details", get(ip_ban_details))
        .route("/bans/ips/{*prefix}", delete(unban_ip))
        .route("/routing", get(routing))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path") })
        .with_state(AdminState {
            network,
            registry,
            metrics: metrics.clone(),
            about,
            shutdown: shutdown.clone(),
            dial_log: Arc::new(SharedLogLimiter::new(1, DIAL_LOG_INTERVAL)),
            store: ban_records.store,
            ban_reasons: Arc::new(std::sync::Mutex::new(ban_records.reasons)),
        })
        // Outside the routes, so an unknown path is refused the same way.
        .layer(axum::middleware::from_fn_with_state(access, checked));
    let limits = server::Limits {
        header_timeout: settings.header_timeout,
        max_connections: settings.max_connections,
    };
    server::serve(listener, app, limits, metrics, shutdown).await
}

/// Lets the request through to its handler if [`guard::Guard`] allows it; 403 or 401 if not.
async fn checked(State(access): State<Access>, request: Request, next: Next) -> Response {
    let Err(rejection) = access.guard.check(request.uri(), request.headers()) else {
        return next.run(request).await;
    };
    access.metrics.rejected(rejection);
    match rejection {
        Rejection::BadHost => error(StatusCode::FORBIDDEN, "host not allowed"),
        Rejection::MissingToken | Rejection::WrongToken => {
            let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// A one-line JSON error.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let message = message.to_string().replace('\n', " ");
    (status, Json(json!({ "error": message }))).into_response()
}

async fn status(State(state): State<AdminState>) -> Json<Value> {
    let about = &state.about;
    let status = about.status.borrow().clone();
    let health = status.health();
    Json(json!({
        "peer_id": about.peer_id.to_string(),
        "network": about.network_id.to_string(),
        "chain_id": about.chain_id,
        "version": about.version,
        "uptime_seconds": about.started.elapsed().as_secs(),
        "listen_address": about.listen_address,
        "advertised_address": about.advertised_address,
        "height": status.height,
        "blocks_per_second": status.blocks_per_second,
        "syncing": status.syncing,
        "validators": status.validators.map(|v| json!({
            "connected": v.connected,
            "expected": v.expected,
            "quorum": v.quorum,
        })),
        "peers": status.peers,
        "peers_by_role": status.peers_by_role,
        "healthy": health.is_ok(),
        "reason": health.err(),
    }))
}

async fn health(State(state): State<AdminState>) -> Response {
    let health = state.about.status.borrow().health();
    match health {
        Ok(()) => (StatusCode::OK, Json(json!({ "healthy": true }))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "healthy": false, "reason": reason })),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    state.about.node_metrics.refresh_process();
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

/// Routes per `GET /routing` page by default, and at most.
const ROUTES_PER_PAGE: usize = 100;
const MAX_ROUTES_PER_PAGE: usize = 1_000;

/// `offset` and `limit` from a query string such as `offset=100&limit=50`; 400 for a value
/// that is not a number.
fn routing_page(query: Option<&str>) -> Result<(usize, usize), String> {
    let (mut offset, mut limit) = (0, ROUTES_PER_PAGE);
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "offset" => &mut offset,
            "limit" => &mut limit,
            _ => continue,
        };
        *slot = value
            .parse()
            .map_err(|_| format!("{name} must be a number, not {value:?}"))?;
    }
    Ok((offset, limit.min(MAX_ROUTES_PER_PAGE)))
}

async fn routing(State(state): State<AdminState>, uri: axum::http::Uri) -> Response {
    let (offset, limit) = match routing_page(uri.query()) {
        Ok(page) => page,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let Some(snapshot) = state.network.routing_snapshot(offset, limit).await else {
        return Json(json!({ "enabled": false })).into_response();
    };
    let last_recompute = snapshot.last_recompute_unix_ms.map(|ms| {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
    });
    let routes: Vec<Value> = snapshot
        .routes
        .iter()
        .map(|route| {
            json!({
                "target": route.target.to_string(),
                "distance": route.distance,
                "next_hops": route.next_hops.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "enabled": true,
        "edges": snapshot.edges,
        "reachable": snapshot.reachable,
        "neighbours": snapshot.neighbours.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "last_recompute_unix_ms": snapshot.last_recompute_unix_ms,
        "last_recompute": last_recompute,
        "offset": offset,
        "limit": limit,
        "routes": routes,
    }))
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
                "chain_status": stats.chain_status.map(|chain| json!({
                    "genesis": chain.status.genesis.to_string(),
                    "best_height": chain.status.best_height,
                    "best_hash": chain.status.best_hash.to_string(),
                    "lib_height": chain.status.lib_height,
                    "lib_hash": chain.status.lib_hash.to_string(),
                    "updated_unix_ms": unix_millis(chain.updated_at),
                    "updates": chain.updates,
                })),
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
    let Json(DialRequest { peer_id, address }) = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    if address.noise_public_key().is_none() || address.handshake_version() != Some(0) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("address {address} must end in /noise-ik/<key>/handshake/0"),
        );
    }
    let dialed = tokio::select! {
        result = state.network.dial(peer_id, address.clone()) => result,
        () = state.shutdown.cancelled() => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "dial cancelled: the node is shutting down");
        }
    };
    match dialed {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "connected": peer_id.to_string() })),
        )
            .into_response(),
        Err(err @ Error::AlreadyConnected { .. }) => error(StatusCode::CONFLICT, err),
        // About the request's address, not about what answers there.
        Err(
            err @ (Error::UnsupportedHandshakeVersion { .. }
            | Error::MissingNoiseKey { .. }
            | Error::DialKeyMismatch { .. }),
        ) => error(StatusCode::BAD_REQUEST, err.chain()),
        Err(err) => {
            let reason = dial_failure(&err);
            state.metrics.dial_failed(reason);
            if let Some(suppressed) = state.dial_log.allow(Instant::now()) {
                node_warn!(
                    peer = %peer_id,
                    %address,
                    reason = reason.as_str(),
                    suppressed,
                    "admin API: dial of {peer_id} at {address} failed: {}",
                    err.chain()
                );
            }
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("dial failed: {}", err.chain()),
            )
        }
    }
}

/// The `reason` label of a failed dial.
fn dial_failure(err: &Error) -> DialFailure {
    match err {
        Error::Transport(_) => DialFailure::Transport,
        _ if err.is_timeout() => DialFailure::Timeout,
        Error::Noise(_) => DialFailure::Noise,
        Error::Handshake(_) => DialFailure::Handshake,
        Error::Banned { .. } | Error::SelfConnection => DialFailure::Refused,
        _ => DialFailure::Other,
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

impl AdminState {
    /// Writes `change` to the store, if the node has one; the error response if it failed.
    async fn persist(&self, change: Change) -> Result<(), Box<Response>> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        store
            .commit(change)
            .await
            .map_err(|err| Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"))))
    }

    fn reasons(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, BanReason>> {
        self.ban_reasons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn bans(State(state): State<AdminState>) -> Json<Vec<Value>> {
    let bans = state.network.bans();
    let reasons = state.reasons();
    Json(
        bans.into_iter()
            .map(|(peer_id, until)| {
                let reason = reasons
                    .get(&peer_id)
                    .copied()
                    .unwrap_or(BanReason::RateLimited);
                json!({
                    "peer_id": peer_id.to_string(),
                    "reason": reason.as_str(),
                    "until": until.map(|until| humantime::format_rfc3339_seconds(until).to_string()),
                })
            })
            .collect(),
    )
}

async fn ban(State(state): State<AdminState>, body: Body<BanRequest>) -> Response {
    let Json(BanRequest { peer_id }) = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    state.reasons().insert(peer_id, BanReason::Manual);
    if let Some(store) = &state.store {
        let change = Change::Peer(PeerChange::Banned {
            key: store.key(peer_id),
            reason: BanReason::Manual,
            until: None,
        });
        if let Err(response) = state.persist(change).await {
            return *response;
        }
    }
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
    if !state.network.unban(peer_id) {
        return error(StatusCode::NOT_FOUND, format!("{peer_id} is not banned"));
    }
    state.reasons().remove(&peer_id);
    if let Some(store) = &state.store {
        let change = Change::Peer(PeerChange::Unbanned {
            key: store.key(peer_id),
        });
        if let Err(response) = state.persist(change).await {
            return *response;
        }
    }
    (
        StatusCode::OK,
        Json(json!({ "unbanned": peer_id.to_string() })),
    )
        .into_response()
}

async fn ip_bans(State(state): State<AdminState>) -> Json<Vec<String>> {
    Json(
        state
            .network
            .banned_ips()
            .into_iter()
            .map(|prefix| prefix.to_string())
            .collect(),
    )
}

/// `GET /bans/ips/details`: the banned IPs and prefixes with when each ban ends.
async fn ip_ban_details(State(state): State<AdminState>) -> Json<Vec<Value>> {
    Json(
        state
            .network
            .ip_bans()
            .into_iter()
            .map(|(prefix, until)| {
                json!({
                    "ip": prefix.to_string(),
                    "until": until.map(|until| humantime::format_rfc3339_seconds(until).to_string()),
                })
            })
            .collect(),
    )
}

async fn ban_ip(State(state): State<AdminState>, body: Body<IpBanRequest>) -> Response {
    let Json(IpBanRequest { ip, duration_secs }) = match json_body(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let until = match duration_secs.map(|secs| {
        SystemTime::now()
            .checked_add(Duration::from_secs(secs))
            .filter(|_| secs > 0)
    }) {
        None => None,
        Some(Some(until)) => Some(until),
        Some(None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "duration_secs must be positive and representable",
            );
        }
    };
    let stored_until = until.map(store::UnixMillis::from_system_time);
    if let Err(response) = state
        .persist(Change::BanIp(ip_ban_key(ip), stored_until))
        .await
    {
        return *response;
    }
    state.network.ban_ip_until(ip, until);
    (
        StatusCode::OK,
        Json(json!({
            "banned_ip": ip.to_string(),
            "until": until.map(|until| humantime::format_rfc3339_seconds(until).to_string()),
        })),
    )
        .into_response()
}

async fn unban_ip(
    State(state): State<AdminState>,
    prefix: Result<Path<String>, PathRejection>,
) -> Response {
    let Path(text) = match input(prefix, "ip") {
        Ok(text) => text,
        Err(response) => return *response,
    };
    let prefix: IpPrefix = match input(text.parse(), "ip") {
        Ok(prefix) => prefix,
        Err(response) => return *response,
    };
    if state.network.unban_ip(prefix) {
        if let Err(response) = state.persist(Change::UnbanIp(ip_ban_key(prefix))).await {
            return *response;
        }
        (
            StatusCode::OK,
            Json(json!({ "unbanned_ip": prefix.to_string() })),
        )
            .into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("{prefix} is not banned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connect times are unix milliseconds and RFC 3339 UTC with milliseconds.
    #[test]
    fn connect_times_format_as_unix_ms_and_rfc3339() {
        let time = UNIX_EPOCH + Duration::from_millis(1_795_248_062_345);
        assert_eq!(unix_millis(time), 1_795_248_062_345);
        assert_eq!(
            humantime::format_rfc3339_millis(time).to_string(),
            "2026-11-21T08:01:02.345Z"
        );
        assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_millis(7)), 7);
    }

    /// `GET /routing`'s page: defaults, a cap on `limit`, other names ignored, and a value
    /// that is not a number refused.
    #[test]
    fn routing_page_reads_offset_and_limit() {
        assert_eq!(routing_page(None).unwrap(), (0, ROUTES_PER_PAGE));
        assert_eq!(routing_page(Some("offset=5&limit=7")).unwrap(), (5, 7));
        assert_eq!(
            routing_page(Some("limit=1000000&x=1")).unwrap(),
            (0, MAX_ROUTES_PER_PAGE)
        );
        assert!(routing_page(Some("offset=-1")).is_err());
    }
}
