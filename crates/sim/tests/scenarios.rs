//! The scenario files shipped in `docs/scenarios/` stay valid as the format changes.

use std::fs;
use std::path::Path;

use sim::Scenario;

/// Every `docs/scenarios/*.toml` parses and resolves into a plan.
#[test]
fn every_shipped_scenario_parses_and_plans() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scenarios");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let scenario =
            Scenario::from_toml(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        scenario
            .plan()
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        checked += 1;
    }
    assert!(
        checked >= 6,
        "only {checked} scenarios in {}",
        dir.display()
    );
}
