//! The stack on the simulated network without applications: determinism, partitions,
//! crashes, and shutdown.

use std::rc::Rc;

use sim::trace::What;
use sim::{NetworkOnly, Scenario};

const SCENARIO: &str = r#"
[network]
validators = 4
full_nodes = 3
duration_s = 40
[latency]
min_ms = 20
max_ms = 60
[[events]]
at_s = 5
action = "partition"
nodes = ["v3"]
[[events]]
at_s = 20
action = "heal"
nodes = ["v3"]
[[events]]
at_s = 22
action = "crash"
nodes = ["v1"]
[[events]]
at_s = 26
action = "restart"
nodes = ["v1"]
"#;

fn run(seed: u64) -> sim::Report {
    let plan = Scenario::from_toml(SCENARIO).unwrap().plan().unwrap();
    sim::run(&plan, seed, Rc::new(NetworkOnly)).unwrap()
}

#[test]
fn smoke() {
    let report = run(7);
    for line in &report.timeline {
        println!("{line}");
    }
    println!("{:?}", report.summary);
}
