//! The baselines: the bench's workloads over plain TCP (`tcp`) and over TCP + Noise IK
//! (`noise`), with no peerlane code in the path.
//!
//! Framing: application messages are u32 big-endian length-prefixed. On `noise` that
//! plaintext stream is cut into the wire format's noise frames (u16 big-endian length, at most
//! 65535 bytes of ciphertext with its 16-byte tag). Writers batch: frames collect in a buffer
//! that is written once it passes [`BATCH`] or when the writer has nothing more queued.
//! Readers allocate their buffer at the first byte, so an idle connection holds none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::{Buf, Bytes, BytesMut};
use snow::{Builder, StatelessTransportState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::args::{Spec, Stack, Workload};
use crate::check::{Progress, Tally};
use crate::report::Measurement;

/// Write once this much is buffered.
const BATCH: usize = 64 * 1024;
/// Read at most this much per read call.
const READ_CHUNK: usize = 64 * 1024;
/// The largest noise frame (ciphertext with tag), as in the wire format.
const MAX_NOISE_FRAME: usize = 65535;
/// AES-GCM's tag.
const TAG: usize = 16;
/// The handshake message each side sends after Noise in `connect`, about the size of
/// peerlane's protocol handshake.
const HANDSHAKE_MESSAGE: usize = 60;
/// The Noise protocol, as in the wire format.
const NOISE_PARAMS: &str = "Noise_IK_25519_AESGCM_SHA256";

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

/// Both ends' static keys.
struct Keys {
    client: snow::Keypair,
    server: snow::Keypair,
}

impl Keys {
    fn generate() -> anyhow::Result<Arc<Self>> {
        let builder = Builder::new(NOISE_PARAMS.parse()?);
        Ok(Arc::new(Self {
            client: builder.generate_keypair()?,
            server: builder.generate_keypair()?,
        }))
    }
}

/// The reading half of a connection: messages out of frames out of the socket.
struct Reader {
    socket: OwnedReadHalf,
    cipher: Option<Arc<StatelessTransportState>>,
    nonce: u64,
    /// Undecrypted noise frames (`noise` only).
    wire: BytesMut,
    /// Length-prefixed plaintext.
    plain: BytesMut,
}

/// The writing half: messages into a batch buffer, framed and (on `noise`) encrypted on flush.
struct Writer {
    socket: OwnedWriteHalf,
    cipher: Option<Arc<StatelessTransportState>>,
    nonce: u64,
    plain: Vec<u8>,
    wire: Vec<u8>,
}

impl Reader {
    /// The next message, or `None` at a clean end of stream.
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some(message) = self.buffered_message() {
                return Ok(Some(message));
            }
            if self.decrypt_buffered()? {
                continue;
            }
            let buf = if self.cipher.is_some() {
                &mut self.wire
            } else {
                &mut self.plain
            };
            if buf.capacity() == 0 {
                // No buffer until there is something to read.
                self.socket.readable().await?;
            }
            buf.reserve(READ_CHUNK);
            if self.socket.read_buf(buf).await? == 0 {
                ensure!(
                    self.plain.is_empty() && self.wire.is_empty(),
                    "connection closed mid-message"
                );
                return Ok(None);
            }
        }
    }

    /// Whether a whole message or noise frame is already buffered (a reply can wait for it).
    fn has_buffered(&self) -> bool {
        let whole = |buf: &BytesMut, prefix: usize| {
            buf.len() >= prefix && {
                let len = if prefix == 4 {
                    u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
                } else {
                    u16::from_be_bytes([buf[0], buf[1]]) as usize
                };
                buf.len() >= prefix + len
            }
        };
        whole(&self.plain, 4) || whole(&self.wire, 2)
    }

    fn buffered_message(&mut self) -> Option<Bytes> {
        if self.plain.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes([self.plain[0], self.plain[1], self.plain[2], self.plain[3]])
            as usize;
        if self.plain.len() < 4 + len {
            return None;
        }
        self.plain.advance(4);
        Some(self.plain.split_to(len).freeze())
    }

    /// Decrypts every whole noise frame buffered; whether it decrypted any.
    fn decrypt_buffered(&mut self) -> anyhow::Result<bool> {
        let Some(cipher) = &self.cipher else {
            return Ok(false);
        };
        let mut any = false;
        while self.wire.len() >= 2 {
            let len = u16::from_be_bytes([self.wire[0], self.wire[1]]) as usize;
            if self.wire.len() < 2 + len {
                break;
            }
            ensure!(
                len >= TAG,
                "noise frame of {len} bytes is shorter than its tag"
            );
            let start = self.plain.len();
            self.plain.resize(start + len - TAG, 0);
            let n = cipher
                .read_message(self.nonce, &self.wire[2..2 + len], &mut self.plain[start..])
                .context("decrypting a noise frame")?;
            self.plain.truncate(start + n);
            self.nonce += 1;
            self.wire.advance(2 + len);
            any = true;
        }
        Ok(any)
    }
}

impl Writer {
    /// Queues one message; writes if the batch is full.
    async fn send(&mut self, message: &[u8]) -> anyhow::Result<()> {
        self.push(message)?;
        if self.plain.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues one message without writing.
    fn push(&mut self, message: &[u8]) -> anyhow::Result<()> {
        let len = u32::try_from(message.len()).context("message over 4 GiB")?;
        self.plain.extend_from_slice(&len.to_be_bytes());
        self.plain.extend_from_slice(message);
        Ok(())
    }

    /// Writes everything queued.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.plain.is_empty() {
            return Ok(());
        }
        match &self.cipher {
            None => self.socket.write_all(&self.plain).await?,
            Some(cipher) => {
                let frames = self.plain.len().div_ceil(MAX_NOISE_FRAME - TAG);
                let needed = self.plain.len() + frames * (2 + TAG);
                // Grown (and zeroed) once, then reused: no per-flush fill.
                if self.wire.len() < needed {
                    self.wire.resize(needed, 0);
                }
                let mut at = 0;
                for chunk in self.plain.chunks(MAX_NOISE_FRAME - TAG) {
                    let n = cipher
                        .write_message(self.nonce, chunk, &mut self.wire[at + 2..])
                        .context("encrypting a noise frame")?;
                    self.nonce += 1;
                    let len = u16::try_from(n).context("noise frame over 65535 bytes")?;
                    self.wire[at..at + 2].copy_from_slice(&len.to_be_bytes());
                    at += 2 + n;
                }
                self.socket.write_all(&self.wire[..at]).await?;
            }
        }
        self.plain.clear();
        Ok(())
    }
}

/// Who runs which end of a handshake.
#[derive(Clone, Copy)]
enum Role {
    Client,
    Server,
}

/// Sets up one connection: nodelay, then on `noise` the IK handshake (two messages, each
/// u16-length-prefixed as in the wire format).
async fn establish(
    stack: Stack,
    mut socket: TcpStream,
    role: Role,
    keys: &Keys,
) -> anyhow::Result<(Reader, Writer)> {
    socket.set_nodelay(true)?;
    let cipher = match stack {
        Stack::Noise => Some(Arc::new(noise_handshake(&mut socket, role, keys).await?)),
        Stack::Tcp | Stack::Peerlane => None,
    };
    let (read, write) = socket.into_split();
    Ok((
        Reader {
            socket: read,
            cipher: cipher.clone(),
            nonce: 0,
            wire: BytesMut::new(),
            plain: BytesMut::new(),
        },
        Writer {
            socket: write,
            cipher,
            nonce: 0,
            plain: Vec::new(),
            wire: Vec::new(),
        },
    ))
}

async fn noise_handshake(
    socket: &mut TcpStream,
    role: Role,
    keys: &Keys,
) -> anyhow::Result<StatelessTransportState> {
    let builder = Builder::new(NOISE_PARAMS.parse()?);
    let mut buf = [0u8; 256];
    let mut msg = [0u8; 256];
    let state = match role {
        Role::Client => {
            let mut hs = builder
                .local_private_key(&keys.client.private)?
                .remote_public_key(&keys.server.public)?
                .build_initiator()?;
            let n = hs.write_message(&[], &mut msg)?;
            write_frame(socket, &msg[..n]).await?;
            let n = read_frame(socket, &mut buf).await?;
            hs.read_message(&buf[..n], &mut msg)?;
            hs
        }
        Role::Server => {
            let mut hs = builder
                .local_private_key(&keys.server.private)?
                .build_responder()?;
            let n = read_frame(socket, &mut buf).await?;
            hs.read_message(&buf[..n], &mut msg)?;
            let n = hs.write_message(&[], &mut msg)?;
            write_frame(socket, &msg[..n]).await?;
            hs
        }
    };
    Ok(state.into_stateless_transport_mode()?)
}

async fn write_frame(socket: &mut TcpStream, frame: &[u8]) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(2 + frame.len());
    out.extend_from_slice(&u16::try_from(frame.len())?.to_be_bytes());
    out.extend_from_slice(frame);
    socket.write_all(&out).await?;
    Ok(())
}

async fn read_frame(socket: &mut TcpStream, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut len = [0u8; 2];
    socket.read_exact(&mut len).await?;
    let len = u16::from_be_bytes(len) as usize;
    ensure!(len <= buf.len(), "handshake message of {len} bytes");
    socket.read_exact(&mut buf[..len]).await?;
    Ok(len)
}

/// A loopback listener and one connection through it: (client, server) ends.
async fn pair(stack: Stack) -> anyhow::Result<((Reader, Writer), (Reader, Writer))> {
    let keys = Keys::generate()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = async {
        let (socket, _) = listener.accept().await?;
        establish(stack, socket, Role::Server, &keys).await
    };
    let client = async {
        let socket = TcpStream::connect(addr).await?;
        establish(stack, socket, Role::Client, &keys).await
    };
    let (client, server) = tokio::try_join!(client, server)?;
    Ok((client, server))
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
