//! One baseline connection: a length-prefixed message [`Reader`] and a batching [`Writer`] over
//! a TCP socket's halves, with (on `noise`) snow's transport cipher cutting the plaintext into
//! the wire format's noise frames; the IK handshake that sets it up ([`establish`]) and a
//! connected loopback [`pair`].
//!
//! Framing: application messages are u32 big-endian length-prefixed. On `noise` that
//! plaintext stream is cut into the wire format's noise frames (u16 big-endian length, at most
//! 65535 bytes of ciphertext with its 16-byte tag). Writers batch: frames collect in a buffer
//! that is written once it passes [`BATCH`] or when the writer has nothing more queued.
//! Readers allocate their buffer at the first byte, so an idle connection holds none.

use std::sync::Arc;

use anyhow::{Context, ensure};
use bytes::{Buf, Bytes, BytesMut};
use snow::{Builder, StatelessTransportState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use crate::args::Stack;

/// Write once this much is buffered.
pub(super) const BATCH: usize = 64 * 1024;
/// Read at most this much per read call.
const READ_CHUNK: usize = 64 * 1024;
/// The largest noise frame (ciphertext with tag), as in the wire format.
const MAX_NOISE_FRAME: usize = 65535;
/// AES-GCM's tag.
const TAG: usize = 16;
/// The handshake message each side sends after Noise in `connect`, about the size of
/// peerlane's protocol handshake.
pub(super) const HANDSHAKE_MESSAGE: usize = 60;
/// The Noise protocol, as in the wire format.
const NOISE_PARAMS: &str = "Noise_IK_25519_AESGCM_SHA256";

/// Both ends' static keys.
pub(super) struct Keys {
    client: snow::Keypair,
    server: snow::Keypair,
}

impl Keys {
    pub(super) fn generate() -> anyhow::Result<Arc<Self>> {
        let builder = Builder::new(NOISE_PARAMS.parse()?);
        Ok(Arc::new(Self {
            client: builder.generate_keypair()?,
            server: builder.generate_keypair()?,
        }))
    }
}

/// The reading half of a connection: messages out of frames out of the socket.
pub(super) struct Reader {
    pub(super) socket: OwnedReadHalf,
    cipher: Option<Arc<StatelessTransportState>>,
    nonce: u64,
    /// Undecrypted noise frames (`noise` only).
    wire: BytesMut,
    /// Length-prefixed plaintext.
    plain: BytesMut,
}

/// The writing half: messages into a batch buffer, framed and (on `noise`) encrypted on flush.
pub(super) struct Writer {
    pub(super) socket: OwnedWriteHalf,
    cipher: Option<Arc<StatelessTransportState>>,
    nonce: u64,
    pub(super) plain: Vec<u8>,
    wire: Vec<u8>,
}

impl Reader {
    /// The next message, or `None` at a clean end of stream.
    pub(super) async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
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
    pub(super) fn has_buffered(&self) -> bool {
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
    pub(super) async fn send(&mut self, message: &[u8]) -> anyhow::Result<()> {
        self.push(message)?;
        if self.plain.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues one message without writing.
    pub(super) fn push(&mut self, message: &[u8]) -> anyhow::Result<()> {
        let len = u32::try_from(message.len()).context("message over 4 GiB")?;
        self.plain.extend_from_slice(&len.to_be_bytes());
        self.plain.extend_from_slice(message);
        Ok(())
    }

    /// Writes everything queued.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
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
pub(super) enum Role {
    Client,
    Server,
}

/// Sets up one connection: nodelay, then on `noise` the IK handshake (two messages, each
/// u16-length-prefixed as in the wire format).
pub(super) async fn establish(
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
pub(super) async fn pair(stack: Stack) -> anyhow::Result<((Reader, Writer), (Reader, Writer))> {
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
