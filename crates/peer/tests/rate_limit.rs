//! Inbound rate limits, played as an attack over memsocket on a paused clock: a remote flooding
//! one protocol gets its excess dropped and counted while another protocol's messages still
//! arrive; requests over the limit get no answer; a sustained flood ends the connection with
//! `RateLimited`.

mod common;

use std::time::Duration;

use common::{CONSENSUS, MEMPOOL, Raw, STORAGE_RPC, direct, expect_direct, request};
use peer::metrics::{InboundDropReason, MessageKind};
use peer::{Config, DisconnectReason, InboundEvent, LimitKind, ProtocolRate, RateLimitConfig};
use test_support::within;

/// Mempool: 10 messages a second with a one-second burst; state sync: one request a second.
fn config(abuse_max_drops: u64) -> Config {
    Config {
        rate_limit: RateLimitConfig {
            burst: Duration::from_secs(1),
            mempool: ProtocolRate::new(10, 1024 * 1024),
            state_sync: ProtocolRate::new(1, 1024 * 1024),
            abuse_max_drops,
            ..RateLimitConfig::default()
        },
        ..Config::default()
    }
}

/// Drains what the router received until the consensus `marker`, which the remote sent last:
/// the number of mempool messages and of other events before it.
async fn drain_until_marker(raw: &mut Raw, marker: &'static [u8]) -> (usize, Vec<InboundEvent>) {
    let mut mempool = 0;
    let mut others = Vec::new();
    loop {
        let event = raw.node.next_event().await;
        match event.protocol_id() {
            p if p == MEMPOOL => mempool += 1,
            p if p == CONSENSUS && event.payload().as_ref() == marker => {
                return (mempool, others);
            }
            _ => others.push(event),
        }
    }
}

/// 50 mempool messages at once: the burst of 10 passes, 40 are dropped and counted under
/// `kind="messages"`; consensus messages in between all arrive; the connection stays up; a
/// second later the bucket passes 10 more.
#[tokio::test(start_paused = true)]
async fn flood_on_one_protocol_is_dropped_while_another_still_arrives() {
    let mut raw = Raw::new(config(1_000));
    for i in 0..50u32 {
        raw.remote
            .send(direct(MEMPOOL, i.to_le_bytes().to_vec()))
            .await;
        if i % 10 == 0 {
            raw.remote.send(direct(CONSENSUS, vec![1])).await;
        }
    }
    raw.remote.send(direct(CONSENSUS, &b"marker"[..])).await;
    let (mempool, others) = drain_until_marker(&mut raw, b"marker").await;
    assert_eq!(mempool, 10, "only the burst passes");
    assert_eq!(others.len(), 5, "every consensus message arrives");
    for event in others {
        let (_, protocol, _) = expect_direct(event);
        assert_eq!(protocol, CONSENSUS);
    }
    let metrics = raw.node.metrics.clone();
    assert_eq!(metrics.rate_limited(MEMPOOL, LimitKind::Messages), 40);
    assert_eq!(metrics.rate_limited(CONSENSUS, LimitKind::Messages), 0);
    assert!(raw.node.handle.is_connected());

    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..20u32 {
        raw.remote
            .send(direct(MEMPOOL, i.to_le_bytes().to_vec()))
            .await;
    }
    raw.remote.send(direct(CONSENSUS, &b"again"[..])).await;
    let (mempool, _) = drain_until_marker(&mut raw, b"again").await;
    assert_eq!(mempool, 10, "a second refills the bucket");
    assert_eq!(metrics.rate_limited(MEMPOOL, LimitKind::Messages), 50);
}

/// A bytes limit: one large message empties the byte bucket and the next is dropped under
/// `kind="bytes"`.
#[tokio::test(start_paused = true)]
async fn bytes_over_the_limit_are_dropped_and_counted() {
    let mut raw = Raw::new(Config {
        rate_limit: RateLimitConfig {
            burst: Duration::from_secs(1),
            mempool: ProtocolRate::new(1_000, 4096),
            ..RateLimitConfig::default()
        },
        ..Config::default()
    });
    raw.remote.send(direct(MEMPOOL, vec![0; 4096])).await;
    raw.remote.send(direct(MEMPOOL, vec![0; 10])).await;
    raw.remote.send(direct(CONSENSUS, &b"marker"[..])).await;
    let (mempool, _) = drain_until_marker(&mut raw, b"marker").await;
    assert_eq!(mempool, 1);
    assert_eq!(raw.node.metrics.rate_limited(MEMPOOL, LimitKind::Bytes), 1);
}

/// RPC requests over the limit are dropped without an answer (the requester's RPC times
/// out), as AptosNet does with too many inbound RPCs, and take no inbound slot.
#[tokio::test(start_paused = true)]
async fn requests_over_the_limit_get_no_answer() {
    let mut raw = Raw::new(config(1_000));
    for id in 0..3 {
        raw.remote.send(request(STORAGE_RPC, id, vec![7])).await;
    }
    raw.remote.send(direct(CONSENSUS, &b"marker"[..])).await;
    let (_, others) = drain_until_marker(&mut raw, b"marker").await;
    assert_eq!(others.len(), 1, "one request passes");
    let metrics = raw.node.metrics.clone();
    assert_eq!(metrics.rate_limited(STORAGE_RPC, LimitKind::Messages), 2);
    assert_eq!(
        metrics.inbound_dropped(MessageKind::RpcRequest, InboundDropReason::TooManyRpcs),
        0
    );
    // The one that passed is answered; nothing else comes back (no error, no response).
    let Some(InboundEvent::RpcRequest { responder, .. }) = others.into_iter().next() else {
        panic!("expected the request");
    };
    responder.respond(vec![8].into()).unwrap();
    match raw.remote.recv_message().await {
        wire::NetworkMessage::RpcResponse(response) => assert_eq!(response.request_id.0, 0),
        other => panic!("expected the response to request 0, got {other:?}"),
    }
    raw.node.handle.disconnect();
    let reason = within("peer closes", raw.node.handle.closed()).await;
    assert_eq!(reason, DisconnectReason::Requested);
}

/// A flood that goes on: more than `abuse_max_drops` drops within the window end the
/// connection with `RateLimited`, counted under that reason.
#[tokio::test(start_paused = true)]
async fn sustained_flood_disconnects_with_rate_limited() {
    let raw = Raw::new(config(20));
    let (handle, metrics) = (raw.node.handle.clone(), raw.node.metrics.clone());
    let mut remote = raw.remote;
    let flood = tokio::spawn(async move {
        for i in 0..10_000u32 {
            // Fails once the peer has closed the connection.
            if futures::SinkExt::send(
                &mut remote.sink,
                &wire::MultiplexMessage::Message(direct(MEMPOOL, i.to_le_bytes().to_vec())),
            )
            .await
            .is_err()
            {
                return i;
            }
        }
        10_000
    });
    let reason = within("the flood is cut off", handle.closed()).await;
    assert_eq!(reason, DisconnectReason::RateLimited);
    assert_eq!(metrics.disconnects(DisconnectReason::RateLimited), 1);
    // 10 passed, then 21 drops closed it; a few more may have been read after.
    assert!(metrics.rate_limited(MEMPOOL, LimitKind::Messages) >= 21);
    let sent = within("the flood stops", flood).await.unwrap();
    assert!(sent < 10_000, "the remote could write the whole flood");
}
