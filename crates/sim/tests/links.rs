//! Two nodes over 100 ms ± 20 ms simulated links: RPCs resolve within their timeouts, direct
//! sends arrive once, and shutdown ends every task the stack spawned.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use netcore::PeerId;
use peerlane::{Event, Network, NetworkBuilder, NetworkClient, NetworkEvents, PeerNetworkId};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sim::software::{self, HostEnv, NodeRole, PeerInfo};
use tokio::time::Instant;
use wire::{NetworkId, ProtocolId};

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Request(u64),
    Response(u64),
    Data(u64),
}

const RPCS: u64 = 180;
/// Under the peer layer's cap of 100 pending RPCs per connection.
const IN_FLIGHT: usize = 50;
const SENDS: u64 = 400;
const RPC_TIMEOUT: Duration = Duration::from_millis(500);
const TICK: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Seen {
    data: HashSet<u64>,
    duplicates: u64,
    /// (answered, timed out, other error, slowest)
    rpcs: (u64, u64, u64, Duration),
    tasks: Vec<(&'static str, usize)>,
}

fn env(index: usize, ip: IpAddr, seeds: Vec<PeerInfo>) -> HostEnv {
    HostEnv {
        index,
        name: format!("f{index}"),
        role: NodeRole::FullNode,
        identity: software::identity(5, index),
        ip,
        validators: Default::default(),
        public_seeds: seeds,
        rng_seed: index as u64,
        health_check: None,
    }
}

fn start(env: &HostEnv) -> (Network, NetworkClient<Msg>, NetworkEvents<Msg>) {
    let mut registry = Registry::default();
    let mut builder: NetworkBuilder = env
        .builder(env.public_network_config(), &mut registry)
        .unwrap();
    let (client, events) = builder
        .add_application(
            [ProtocolId::MEMPOOL_DIRECT_SEND],
            [ProtocolId::MEMPOOL_RPC],
            Default::default(),
        )
        .unwrap();
    (builder.build().unwrap(), client, events)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[test]
fn rpcs_resolve_within_their_timeout_and_direct_sends_arrive_once_on_slow_links() {
    let mut sim = turmoil::Builder::new()
        .min_message_latency(Duration::from_millis(80))
        .max_message_latency(Duration::from_millis(120))
        .tick_duration(TICK)
        .simulation_duration(Duration::from_secs(60))
        .tcp_capacity(4096)
        .rng_seed(3)
        .build();
    // Spread over the whole range rather than mostly near 80 ms.
    sim.set_message_latency_curve(1.0);
    let server_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let client_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
    let server_env = env(0, server_ip, Vec::new());
    let server_info = software::peer_info(
        "f0".into(),
        NodeRole::FullNode,
        server_ip,
        &server_env.identity,
    );
    let server_id: PeerId = server_info.peer_id;
    let client_env = env(1, client_ip, vec![server_info]);
    let seen = Rc::new(RefCell::new(Seen::default()));

    let server_seen = seen.clone();
    sim.host(server_ip, move || {
        let env = server_env.clone();
        let seen = server_seen.clone();
        async move {
            let (_network, _client, mut events) = start(&env);
            while let Some(event) = events.next().await {
                match event {
                    Event::Message {
                        message: Msg::Data(n),
                        ..
                    } => {
                        let mut seen = seen.borrow_mut();
                        if !seen.data.insert(n) {
                            seen.duplicates += 1;
                        }
                    }
                    Event::RpcRequest {
                        request: Msg::Request(n),
                        responder,
                        ..
                    } => {
                        // A third are never answered (the requester times out), a third at
                        // once, a third after up to 600 ms (some past the timeout).
                        match n % 3 {
                            0 => drop(responder),
                            1 => responder.reply(Msg::Response(n)).unwrap(),
                            _ => {
                                tokio::spawn(async move {
                                    tokio::time::sleep(Duration::from_millis(n % 7 * 100)).await;
                                    let _ = responder.reply(Msg::Response(n));
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        }
    });

    let client_seen = seen.clone();
    sim.client(client_ip, async move {
        let baseline = alive_tasks();
        let (network, client, _events) = start(&client_env);
        let server = PeerNetworkId {
            network_id: NetworkId::Public,
            peer_id: server_id,
        };
        while !network.is_connected(server_id) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        client_seen
            .borrow_mut()
            .tasks
            .push(("running", alive_tasks() - baseline));
        let rpcs = futures::stream::iter(0..RPCS)
            .map(|n| {
                let client = client.clone();
                async move {
                    let start = Instant::now();
                    let result = client.send_rpc(server, Msg::Request(n), RPC_TIMEOUT).await;
                    (n, result, start.elapsed())
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>();
        let sends = async {
            for n in 0..SENDS {
                client
                    .send_to_peer_wait(server, &Msg::Data(n))
                    .await
                    .unwrap();
            }
        };
        let (results, ()) = futures::join!(rpcs, sends);
        for (n, result, took) in results {
            let mut seen = client_seen.borrow_mut();
            seen.rpcs.3 = seen.rpcs.3.max(took);
            match result {
                Ok(Msg::Response(m)) if m == n => seen.rpcs.0 += 1,
                Err(err) if err.is_timeout() => seen.rpcs.1 += 1,
                other => {
                    seen.rpcs.2 += 1;
                    eprintln!("rpc {n}: {other:?}");
                }
            }
        }
        // Let the last sends land before counting them.
        tokio::time::sleep(Duration::from_secs(2)).await;
        network.shutdown().await;
        tokio::task::yield_now().await;
        client_seen
            .borrow_mut()
            .tasks
            .push(("after shutdown", alive_tasks() - baseline));
        Ok(())
    });
    sim.run().unwrap();

    let seen = seen.borrow();
    let (answered, timed_out, failed, slowest) = seen.rpcs;
    assert_eq!(failed, 0, "every RPC is answered or times out");
    assert_eq!(answered + timed_out, RPCS);
    // Unanswered ones time out; prompt ones are answered (2 × 120 ms at most, well within).
    assert!(timed_out >= RPCS / 3, "{timed_out} timed out");
    assert!(answered >= RPCS / 3, "{answered} answered");
    assert!(slowest <= RPC_TIMEOUT + TICK, "an RPC took {slowest:?}");
    assert_eq!(seen.duplicates, 0, "a direct send was delivered twice");
    assert_eq!(seen.data.len() as u64, SENDS, "every direct send arrived");
    let running = seen.tasks[0].1;
    assert!(running >= 5, "the stack runs tasks of its own ({running})");
    assert_eq!(
        seen.tasks[1],
        ("after shutdown", 0),
        "tasks outlived shutdown"
    );
}
