//! Where the two ends of a request/response loop wait, and what it costs: a 64-byte echo over
//! loopback TCP, 20,000 round trips after 1,000 warm-up ones, in five placements. No
//! peerlane code; it explains the bench's choice to run each workload as a task (see
//! docs/performance.md, "Why the baselines' round trip used to cost ten times more").
//!
//! `cargo run --release -p peerlane-bench --example round_trip_placement [PLACEMENT…]`, with
//! placements `block-on`, `block-on-timer`, `tasks`, `one-thread`, `threads` (default: all).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUND_TRIPS: usize = 20_000;
const WARM_UP: usize = 1_000;
const SIZE: usize = 64;

fn main() -> std::io::Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    if run("block-on") {
        let times = multi_thread()?.block_on(async {
            let (client, server) = pair().await?;
            tokio::spawn(echo(server));
            client_loop(client).await
        })?;
        report("client on the block_on thread", times);
    }
    if run("block-on-timer") {
        let times = multi_thread()?.block_on(async {
            let (client, server) = pair().await?;
            tokio::spawn(echo(server));
            let ticking = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            };
            tokio::select! {
                times = client_loop(client) => times,
                () = ticking => unreachable!("the timer loops forever"),
            }
        })?;
        report("the same, with a 250 ms timer", times);
    }
    if run("tasks") {
        let times = multi_thread()?.block_on(async {
            let (client, server) = pair().await?;
            tokio::spawn(echo(server));
            tokio::spawn(client_loop(client)).await?
        })?;
        report("client and server both tasks", times);
    }
    if run("one-thread") {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let times = runtime.block_on(async {
            let (client, server) = pair().await?;
            tokio::spawn(echo(server));
            client_loop(client).await
        })?;
        report("one thread runs both ends", times);
    }
    if run("threads") {
        report("two OS threads, blocking sockets", blocking_threads()?);
    }
    Ok(())
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

async fn pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
    let (client, server) = (client?, accepted?.0);
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

async fn echo(mut socket: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; SIZE];
    loop {
        if socket.read_exact(&mut buf).await.is_err() {
            return Ok(());
        }
        socket.write_all(&buf).await?;
    }
}

async fn client_loop(mut socket: TcpStream) -> std::io::Result<Vec<Duration>> {
    let mut buf = [0u8; SIZE];
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..WARM_UP + ROUND_TRIPS {
        let start = Instant::now();
        socket.write_all(&buf).await?;
        socket.read_exact(&mut buf).await?;
        if i >= WARM_UP {
            times.push(start.elapsed());
        }
    }
    Ok(times)
}

fn blocking_threads() -> std::io::Result<Vec<Duration>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut socket, _) = listener.accept()?;
        socket.set_nodelay(true)?;
        let mut buf = [0u8; SIZE];
        while socket.read_exact(&mut buf).is_ok() {
            socket.write_all(&buf)?;
        }
        Ok(())
    });
    let mut socket = std::net::TcpStream::connect(address)?;
    socket.set_nodelay(true)?;
    let mut buf = [0u8; SIZE];
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..WARM_UP + ROUND_TRIPS {
        let start = Instant::now();
        socket.write_all(&buf)?;
        socket.read_exact(&mut buf)?;
        if i >= WARM_UP {
            times.push(start.elapsed());
        }
    }
    drop(socket);
    server.join().expect("the echo thread does not panic")?;
    Ok(times)
}

fn report(placement: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let at = |q: f64| {
        let rank = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len());
        times[rank - 1].as_secs_f64() * 1e6
    };
    println!(
        "{placement:<36} p50 {:6.1} µs   p99 {:6.1} µs",
        at(0.5),
        at(0.99)
    );
}
