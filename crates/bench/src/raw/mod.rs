//! The baselines: the bench's workloads over plain TCP (`tcp`) and over TCP + Noise IK
//! (`noise`), with no peerlane code in the path. The connection they run over (framing,
//! batching, the cipher, the handshake) is in `connection`.

mod connection;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use self::connection::{BATCH, HANDSHAKE_MESSAGE, Keys, Reader, Role, Writer, establish, pair};
use crate::args::{Spec, Stack, Workload};
use crate::check::{Progress, Tally};
use crate::report::Measurement;

/// Runs `spec` over `stack` (`tcp` or `noise`).
pub(super) async fn run(
    stack: Stack,
    spec: Spec,
    progress: &Progress,
) -> anyhow::Result<Measurement> {
    match spec.workload {
        Workload::Bulk | Workload::Small | Workload::Sweep => {
            one_way(stack, spec.count, spec.count, spec.size, progress).await
        }
        Workload::RpcLat => rpc_lat(stack, spec, progress).await,
        Workload::RpcTput => rpc_tput(stack, spec, progress).await,
        Workload::Connect => connect(stack, spec, progress).await,
        Workload::IdleMem => idle_mem(stack, spec, progress).await,
        Workload::Flood => anyhow::bail!("flood runs against the peerlane listener only"),
    }
}

/// One-way messages: the client sends `sent` messages of `size` bytes, the server expects
/// `expected` (the two differ only in tests of the check itself).
pub(super) async fn one_way(
    stack: Stack,
    expected: u64,
    sent: u64,
    size: usize,
    progress: &Progress,
) -> anyhow::Result<Measurement> {
    let ((_client_reader, mut writer), (mut reader, _server_writer)) = pair(stack).await?;
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let mut message = crate::check::payload(0, size);
        for seq in 0..sent {
            crate::check::write_seq(&mut message, seq);
            writer.send(&message).await?;
        }
        writer.flush().await?;
        // Closing the stream ends the receiver's wait if messages are missing.
        writer.socket.shutdown().await?;
        anyhow::Ok(())
    });
    let mut tally = Tally::new(expected, size);
    while !tally.is_complete() {
        match reader.next().await? {
            Some(message) => tally.record(&message)?,
            None => bail!(
                "connection closed after {} of {expected} messages",
                tally.received()
            ),
        }
        progress.tick();
    }
    let elapsed = start.elapsed();
    sender.await??;
    let (items, bytes) = tally.finish()?;
    Ok(Measurement {
        elapsed,
        items,
        bytes,
        ..Measurement::default()
    })
}

/// Answers every request with a same-size response carrying its id, writing when no further
/// request is buffered; returns at the end of the stream.
async fn echo_server(mut reader: Reader, mut writer: Writer) -> anyhow::Result<()> {
    while let Some(request) = reader.next().await? {
        writer.push(&request)?;
        if !reader.has_buffered() || writer.plain.len() >= BATCH {
            writer.flush().await?;
        }
    }
    writer.flush().await
}

async fn rpc_lat(stack: Stack, spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let ((mut reader, mut writer), (server_reader, server_writer)) = pair(stack).await?;
    let server = tokio::spawn(echo_server(server_reader, server_writer));
    let mut latencies = Vec::with_capacity(spec.count as usize);
    let mut request = crate::check::payload(0, spec.size);
    let mut measured_from = Instant::now();
    for id in 0..spec.warmup + spec.count {
        if id == spec.warmup {
            measured_from = Instant::now();
        }
        crate::check::write_seq(&mut request, id);
        let start = Instant::now();
        writer.push(&request)?;
        writer.flush().await?;
        let response = reader
            .next()
            .await?
            .with_context(|| format!("connection closed before the response to RPC {id}"))?;
        let took = start.elapsed();
        crate::check::check_response(&response, id, spec.size)?;
        if id >= spec.warmup {
            latencies.push(took);
        }
        progress.tick();
    }
    let elapsed = measured_from.elapsed();
    writer.socket.shutdown().await?;
    server.await??;
    Ok(Measurement {
        elapsed,
        items: latencies.len() as u64,
        latencies,
        ..Measurement::default()
    })
}

async fn rpc_tput(stack: Stack, spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let ((mut reader, mut writer), (server_reader, server_writer)) = pair(stack).await?;
    let server = tokio::spawn(echo_server(server_reader, server_writer));
    let window = Arc::new(Semaphore::new(spec.concurrency as usize));
    let count = spec.count;
    let start = Instant::now();
    let sender = {
        let window = window.clone();
        tokio::spawn(async move {
            let mut request = crate::check::payload(0, spec.size);
            for id in 0..count {
                if let Ok(permit) = window.try_acquire() {
                    permit.forget();
                } else {
                    // Nothing more may go out until a response comes back: write the batch.
                    writer.flush().await?;
                    window.acquire().await?.forget();
                }
                crate::check::write_seq(&mut request, id);
                writer.send(&request).await?;
            }
            writer.flush().await?;
            anyhow::Ok(writer)
        })
    };
    let mut answered = vec![false; count as usize];
    for n in 0..count {
        let response = reader
            .next()
            .await?
            .with_context(|| format!("connection closed after {n} of {count} responses"))?;
        let id = crate::check::read_seq(&response);
        let slot = answered
            .get_mut(id as usize)
            .filter(|seen| !**seen)
            .with_context(|| format!("response with unknown or repeated id {id}"))?;
        *slot = true;
        crate::check::check_response(&response, id, spec.size)?;
        window.add_permits(1);
        progress.tick();
    }
    let elapsed = start.elapsed();
    let mut writer = sender.await??;
    writer.socket.shutdown().await?;
    server.await??;
    ensure!(answered.iter().all(|a| *a), "some RPCs got no response");
    Ok(Measurement {
        elapsed,
        items: count,
        ..Measurement::default()
    })
}

/// Fresh connection, Noise IK (on `noise`), a handshake message each way, one RPC, close;
/// the next connection starts once the server has seen the close.
async fn connect(stack: Stack, spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let keys = Keys::generate()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (closed_tx, mut closed_rx) = mpsc::channel::<()>(1);
    let server = {
        let keys = keys.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await?;
                let (mut reader, mut writer) =
                    establish(stack, socket, Role::Server, &keys).await?;
                let hello = reader.next().await?.context("no handshake message")?;
                ensure!(hello.len() == HANDSHAKE_MESSAGE, "bad handshake message");
                writer.push(&[0x11; HANDSHAKE_MESSAGE])?;
                writer.flush().await?;
                echo_server(reader, writer).await?;
                if closed_tx.send(()).await.is_err() {
                    return anyhow::Ok(());
                }
            }
        })
    };
    let start = Instant::now();
    let mut request = crate::check::payload(0, spec.size);
    for id in 0..spec.count {
        let socket = TcpStream::connect(addr).await?;
        let (mut reader, mut writer) = establish(stack, socket, Role::Client, &keys).await?;
        writer.push(&[0x22; HANDSHAKE_MESSAGE])?;
        writer.flush().await?;
        let hello = reader.next().await?.context("no handshake message back")?;
        ensure!(
            hello.len() == HANDSHAKE_MESSAGE,
            "bad handshake message back"
        );
        crate::check::write_seq(&mut request, id);
        writer.push(&request)?;
        writer.flush().await?;
        let response = reader
            .next()
            .await?
            .with_context(|| format!("connection {id} closed before its RPC response"))?;
        crate::check::check_response(&response, id, spec.size)?;
        writer.socket.shutdown().await?;
        drop((reader, writer));
        closed_rx
            .recv()
            .await
            .context("the listener stopped early")?;
        progress.tick();
    }
    let elapsed = start.elapsed();
    server.abort();
    Ok(Measurement {
        elapsed,
        items: spec.count,
        ..Measurement::default()
    })
}

/// Holds one end of an idle connection until the other end closes it.
async fn idle(mut reader: Reader, writer: Writer) -> anyhow::Result<()> {
    let _writer = writer;
    while reader.next().await?.is_some() {}
    Ok(())
}

async fn idle_mem(stack: Stack, spec: Spec, progress: &Progress) -> anyhow::Result<Measurement> {
    let keys = Keys::generate()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let n = spec.count;
    let mut client_side = JoinSet::new();
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(64);
    let before = crate::sys::rss_bytes()?;

    let accept = {
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut held = JoinSet::new();
            for _ in 0..n {
                let (socket, _) = listener.accept().await?;
                let (reader, writer) = establish(stack, socket, Role::Server, &keys).await?;
                held.spawn(idle(reader, writer));
                let _ = ready_tx.send(()).await;
            }
            // Keep the server ends until the clients close.
            while let Some(result) = held.join_next().await {
                result??;
            }
            anyhow::Ok(())
        })
    };
    for _ in 0..n {
        let socket = TcpStream::connect(addr).await?;
        let (reader, writer) = establish(stack, socket, Role::Client, &keys).await?;
        client_side.spawn(idle(reader, writer));
        ready_rx
            .recv()
            .await
            .context("the listener stopped early")?;
        progress.tick();
    }
    settle().await;
    let after = crate::sys::rss_bytes()?;
    // Closing the client ends lets both sides' tasks finish.
    client_side.abort_all();
    while client_side.join_next().await.is_some() {}
    let _ = tokio::time::timeout(Duration::from_secs(5), accept).await;
    Ok(Measurement {
        elapsed: Duration::ZERO,
        items: n,
        rss_delta: Some(after - before),
        ..Measurement::default()
    })
}

/// Lets connection tasks reach their idle state before memory is read.
pub(super) async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}
