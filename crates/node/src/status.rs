//! [`Status`]: what `peerlane node` tells its operator about itself — the periodic status
//! line, the quorum warning, `GET /status` and `GET /health`. Pure: the node's status task
//! gathers a [`Sample`] from the network and the applications, and this module turns it into
//! a status, a line and a health verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// What the status task reads each interval.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sample {
    /// The committed height: consensus's, or the state-sync store's without consensus.
    pub(crate) height: u64,
    /// Connected peers by role (config spelling: `validator`, `upstream`, …).
    pub(crate) peers_by_role: BTreeMap<&'static str, usize>,
    /// With consensus on: the validator set's size (this node included), and how many of the
    /// other validators are connected.
    pub(crate) validators: Option<Validators>,
    /// Whether state sync runs.
    pub(crate) state_sync: bool,
}

/// The consensus validator set as the node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Validators {
    /// Validators in the set, this node included.
    pub(crate) expected: usize,
    /// Validators reachable: this node and the connected others.
    pub(crate) connected: usize,
    /// Validators needed to commit (the consensus quorum, this node included).
    pub(crate) quorum: usize,
}

impl Validators {
    /// Whether enough validators are connected to commit.
    pub(crate) fn has_quorum(&self) -> bool {
        self.connected >= self.quorum
    }
}

/// The node's status after a sample: the sample, and the rate since the previous one.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Status {
    /// Committed height.
    pub(crate) height: u64,
    /// Blocks per second over the last interval.
    pub(crate) blocks_per_second: f64,
    /// Whether the height grew by state sync alone over the last interval (no consensus here,
    /// or consensus without a quorum while state sync caught up).
    pub(crate) syncing: bool,
    /// Connected peers, all roles.
    pub(crate) peers: usize,
    /// Connected peers by role.
    pub(crate) peers_by_role: BTreeMap<&'static str, usize>,
    /// The validator set's view, with consensus on.
    pub(crate) validators: Option<Validators>,
    /// Samples taken so far (0: none yet).
    #[serde(skip)]
    pub(crate) samples: u64,
}

impl Status {
    /// The status after `sample`, taken `elapsed` after the one `self` holds.
    pub(crate) fn next(&self, sample: Sample, elapsed: Duration) -> Self {
        let grown = sample.height.saturating_sub(self.height);
        let blocks_per_second = if self.samples == 0 || elapsed.is_zero() {
            0.0
        } else {
            // Heights stay far below 2^52, where f64 is exact.
            #[allow(clippy::cast_precision_loss)]
            let rate = grown as f64 / elapsed.as_secs_f64();
            rate
        };
        let committing = sample.validators.is_some_and(|v| v.has_quorum());
        Self {
            height: sample.height,
            blocks_per_second,
            syncing: sample.state_sync && self.samples > 0 && grown > 0 && !committing,
            peers: sample.peers_by_role.values().sum(),
            peers_by_role: sample.peers_by_role,
            validators: sample.validators,
            samples: self.samples + 1,
        }
    }

    /// The periodic status line: `status: height 120 (+2.0/s), validators 3/3 connected,
    /// peers 2 (validator 2)`.
    pub(crate) fn line(&self) -> String {
        let mut line = format!(
            "status: height {} (+{:.1}/s)",
            self.height, self.blocks_per_second
        );
        if self.syncing {
            line.push_str(", syncing");
        }
        if let Some(validators) = self.validators {
            line.push_str(&format!(
                ", validators {}/{} connected",
                validators.connected, validators.expected
            ));
        }
        line.push_str(&format!(", peers {}", self.peers));
        if !self.peers_by_role.is_empty() {
            let roles: Vec<String> = self
                .peers_by_role
                .iter()
                .map(|(role, count)| format!("{role} {count}"))
                .collect();
            line.push_str(&format!(" ({})", roles.join(", ")));
        }
        line
    }

    /// Why the node is not committing, if consensus runs without a quorum: `not committing: 2
    /// of 3 validators connected, need 3`.
    pub(crate) fn quorum_warning(&self) -> Option<String> {
        let validators = self.validators?;
        (!validators.has_quorum()).then(|| {
            format!(
                "not committing: {} of {} validators connected, need {}",
                validators.connected, validators.expected, validators.quorum
            )
        })
    }

    /// `Ok` when the node does its job, else why not (`GET /health` answers 503 with it): no
    /// sample yet, consensus without a quorum, or no peer at all.
    pub(crate) fn health(&self) -> Result<(), String> {
        if self.samples == 0 {
            return Err("starting: no status yet".to_owned());
        }
        if let Some(warning) = self.quorum_warning() {
            return Err(warning);
        }
        if self.peers == 0 {
            return Err("no peer connected".to_owned());
        }
        Ok(())
    }
}

/// Validators that may fail with the set still committing, for a set of `n` whose quorum is
/// `quorum`.
pub(crate) fn fault_tolerance(n: usize, quorum: usize) -> usize {
    n.saturating_sub(quorum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(height: u64, connected: usize) -> Sample {
        Sample {
            height,
            peers_by_role: [("validator", connected - 1)].into(),
            validators: Some(Validators {
                expected: 3,
                connected,
                quorum: 3,
            }),
            state_sync: true,
        }
    }

    /// The line shows height, rate, validators and peers by role; the rate is per second over
    /// the interval.
    #[test]
    fn the_status_line_shows_height_rate_validators_and_peers() {
        let first = Status::default().next(sample(10, 3), Duration::from_secs(10));
        assert_eq!(first.blocks_per_second, 0.0);
        let second = first.next(sample(30, 3), Duration::from_secs(10));
        assert_eq!(
            second.line(),
            "status: height 30 (+2.0/s), validators 3/3 connected, peers 2 (validator 2)"
        );
        assert_eq!(second.quorum_warning(), None);
        assert_eq!(second.health(), Ok(()));
    }

    /// Without a quorum the node says why it does not commit, and is unhealthy for it.
    #[test]
    fn without_a_quorum_the_node_says_it_is_not_committing() {
        let status = Status::default().next(sample(0, 2), Duration::from_secs(1));
        let warning = "not committing: 2 of 3 validators connected, need 3";
        assert_eq!(status.quorum_warning().as_deref(), Some(warning));
        assert_eq!(status.health(), Err(warning.to_owned()));
        assert!(!status.syncing);
    }

    /// Growth without a quorum is state sync's: the node is syncing. No sample yet, or no
    /// peer, is unhealthy.
    #[test]
    fn growth_without_quorum_is_syncing_and_no_peers_is_unhealthy() {
        let status = Status::default()
            .next(sample(0, 2), Duration::from_secs(1))
            .next(sample(5, 2), Duration::from_secs(1));
        assert!(status.syncing);
        assert!(Status::default().health().is_err());
        let alone = Status::default().next(
            Sample {
                state_sync: true,
                ..Sample::default()
            },
            Duration::from_secs(1),
        );
        assert_eq!(alone.health(), Err("no peer connected".to_owned()));
        assert_eq!(alone.line(), "status: height 0 (+0.0/s), peers 0");
    }

    /// Three validators tolerate no failure, four tolerate one.
    #[test]
    fn fault_tolerance_is_the_set_minus_the_quorum() {
        assert_eq!(fault_tolerance(3, 3), 0);
        assert_eq!(fault_tolerance(4, 3), 1);
        assert_eq!(fault_tolerance(7, 5), 2);
    }
}
