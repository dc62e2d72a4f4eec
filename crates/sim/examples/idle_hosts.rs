//! What one simulator step costs with `N` idle hosts (software that only sleeps): turmoil's
//! own per-step work, apart from anything the stack does. docs/performance.md quotes it.
//! Idle hosts send nothing, so with the patched turmoil (third_party/turmoil) no link exists
//! and a step costs only the hosts' own polling.
//!
//! ```sh
//! cargo run --release -p peerlane-sim --example idle_hosts -- 1000 50
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let hosts: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let steps: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(3600))
        .build();
    let registering = Instant::now();
    for i in 0..hosts {
        let [hi, lo] = i.to_be_bytes();
        sim.host(IpAddr::V4(Ipv4Addr::new(10, hi, lo, 1)), || async {
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
    }
    let registered = registering.elapsed();
    let stepping = Instant::now();
    for _ in 0..steps {
        sim.step().expect("idle hosts do not fail");
    }
    let per_step = stepping.elapsed() / steps;
    let mut links = 0;
    sim.links(|iter| links = iter.count());
    println!("{hosts} hosts ({links} links): registered in {registered:?}, {per_step:?} per step");
}
