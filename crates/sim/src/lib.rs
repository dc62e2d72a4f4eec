//! peerlane-sim: the whole peerlane stack (Noise, peers, connectivity manager, health
//! checker, applications) on a deterministic simulated network, [turmoil], with partitions,
//! slow links, holds, crashes and restarts, for a thousand nodes and more in one process.
//! turmoil is the vendored copy in `third_party/turmoil`, patched to create a link between
//! two hosts only when they first use it, so a step costs what the hosts do rather than the
//! number of host pairs (its `PATCHES.md`; docs/simulator.md).
//!
//! ```text
//! Scenario (TOML) ── plan() ──► Plan ──► engine::run(plan, seed, software) ──► Report
//!                                           │                                 (Summary, timeline,
//!                                           │  one turmoil host per node       Trace + hash)
//!                                           ▼
//!                      NodeSoftware::start(HostEnv) ─► NetworkBuilder(TransportKind::Custom(SimTransport))
//! ```
//!
//! - [`transport`]: [`SimTransport`], netcore's `Transport` over turmoil's TCP; the facade
//!   takes it as `TransportKind::Custom`, so `NetworkBuilder`, Noise and every task run
//!   unchanged on top.
//! - [`scenario`]: the scenario file and its resolution into a [`Plan`] (pure).
//! - [`trace`]: the event trace, its hash and the summary (pure).
//! - [`software`]: what a host runs: [`NodeSoftware`], [`HostEnv`] (keys, addresses and the
//!   configs a scenario implies), and [`NetworkOnly`] for runs without applications.
//! - [`engine`]: plays a plan on the simulator.
//!
//! Determinism: turmoil's RNG (message latency) is seeded with the run's seed, node keys
//! derive from it, each network's random choices are seeded through
//! `NetworkBuilder::rng_seed`, and `NetworkBuilder::on_simulator` keeps routing's signature
//! checks and time of day on simulated time; docs/simulator.md says what remains outside the
//! seed.

pub mod engine;
pub mod error;
pub mod scenario;
pub mod software;
pub mod trace;
pub mod transport;

pub use engine::{Report, run};
pub use error::Error;
pub use scenario::{Plan, Scenario};
pub use software::{HostEnv, NetworkOnly, NodeRole, NodeSoftware, RunningNode};
pub use trace::{Summary, Trace};
pub use transport::SimTransport;
