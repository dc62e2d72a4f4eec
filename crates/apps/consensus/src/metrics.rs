//! [`Metrics`]: the prometheus metrics under `consensus`, their registration, the
//! [`Rejected`] label, and [`VoteLatencies`], the vote round trips again at microsecond
//! resolution for exact percentiles.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram as Hdr;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Upper bounds of the vote latency buckets, in seconds: 0.5 ms to about 4 s, then +Inf.
const VOTE_LATENCY_START: f64 = 0.0005;
const VOTE_LATENCY_FACTOR: f64 = 2.0;
const VOTE_LATENCY_BUCKETS: u16 = 14;

netcore::metric_label_enum! {
    /// Messages dropped because their sender had no right to send them, for
    /// `consensus_rejected_total`.
    #[non_exhaustive]
    pub enum Rejected {
        /// A vote whose `voter` is not the authenticated peer that sent it
        /// (`vote_not_from_voter`).
        VoteNotFromVoter => "vote_not_from_voter",
        /// A commit not sent by the leader of its round (`commit_not_from_leader`).
        CommitNotFromLeader => "commit_not_from_leader",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectedLabels {
    reason: Rejected,
}

/// The prometheus metrics, under the prefix `consensus`; read them through
/// [`ConsensusHandle::metrics`](crate::ConsensusHandle::metrics).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub(crate) proposals: Counter,
    pub(crate) votes_sent: Counter,
    pub(crate) votes_counted: Counter,
    pub(crate) commits: Counter,
    pub(crate) round_timeouts: Counter,
    pub(crate) committed_height: Gauge,
    /// Proposals and commits for validators we are not connected to that were not routed.
    pub(crate) routed_not_sent: Counter,
    vote_latency: Histogram,
    /// The same round trips at microsecond resolution: the Prometheus buckets double in
    /// width, so a percentile read from them is only a bucket bound.
    vote_latencies: Arc<Mutex<VoteLatencies>>,
    rejected: Family<RejectedLabels, Counter>,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let bounds = exponential_buckets(
            VOTE_LATENCY_START,
            VOTE_LATENCY_FACTOR,
            VOTE_LATENCY_BUCKETS,
        );
        let metrics = Self {
            proposals: Counter::default(),
            votes_sent: Counter::default(),
            votes_counted: Counter::default(),
            commits: Counter::default(),
            round_timeouts: Counter::default(),
            committed_height: Gauge::default(),
            routed_not_sent: Counter::default(),
            vote_latency: Histogram::new(bounds),
            vote_latencies: Arc::new(Mutex::new(VoteLatencies::new())),
            rejected: Family::default(),
        };
        let registry = registry.sub_registry_with_prefix("consensus");
        registry.register(
            "proposals",
            "Blocks this node proposed",
            metrics.proposals.clone(),
        );
        registry.register(
            "votes_sent",
            "Votes this node sent",
            metrics.votes_sent.clone(),
        );
        registry.register(
            "votes_counted",
            "Votes for this node's proposals, from other validators",
            metrics.votes_counted.clone(),
        );
        registry.register(
            "commits",
            "Blocks this node committed",
            metrics.commits.clone(),
        );
        registry.register(
            "round_timeouts",
            "Rounds that ended without a commit",
            metrics.round_timeouts.clone(),
        );
        registry.register(
            "committed_height",
            "Height of the last committed block",
            metrics.committed_height.clone(),
        );
        registry.register(
            "routed_not_sent",
            "Proposals and commits for validators not connected that could not be routed \
             (no route, routing busy, or too many routed sends in flight)",
            metrics.routed_not_sent.clone(),
        );
        registry.register(
            "vote_rpc_latency_seconds",
            "Time from sending a vote to the leader's ack",
            metrics.vote_latency.clone(),
        );
        registry.register(
            "rejected",
            "Votes and commits dropped because their sender had no right to send them",
            metrics.rejected.clone(),
        );
        metrics
    }

    pub(crate) fn observe_vote_latency(&self, took: Duration) {
        self.vote_latency.observe(took.as_secs_f64());
        self.vote_latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(took);
    }

    pub(crate) fn reject(&self, reason: Rejected) {
        self.rejected
            .get_or_create(&RejectedLabels { reason })
            .inc();
    }

    /// Votes this node counted for its own proposals, from other validators.
    pub fn votes_counted(&self) -> u64 {
        self.votes_counted.get()
    }

    /// Proposals and commits for validators not connected that could not be routed
    /// (`consensus_routed_not_sent_total`).
    pub fn routed_not_sent(&self) -> u64 {
        self.routed_not_sent.get()
    }

    /// Messages dropped for `reason`.
    pub fn rejected(&self, reason: Rejected) -> u64 {
        self.rejected
            .get(&RejectedLabels { reason })
            .map_or(0, |counter| counter.get())
    }

    /// Every vote round trip so far (`consensus_vote_rpc_latency_seconds` at microsecond
    /// resolution), a copy.
    pub fn vote_latencies(&self) -> VoteLatencies {
        self.vote_latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Round trips, recorded in microseconds with three significant digits (an HDR histogram: a
/// percentile read from it is within 0.1% of the exact one, where the Prometheus buckets
/// only give a bound of a bucket twice the width of the one below), from 1 µs to an hour
/// (longer ones are counted as an hour). About 40 KiB whatever the count.
#[derive(Clone, Debug)]
pub struct VoteLatencies(Hdr<u64>);

impl VoteLatencies {
    /// The longest round trip told apart, in µs: an hour.
    const MAX_US: u64 = 3_600_000_000;

    /// No observations.
    pub fn new() -> Self {
        Self(
            Hdr::new_with_bounds(1, Self::MAX_US, 3)
                .expect("1 ≤ low, 2 × low ≤ high and 3 significant digits are valid bounds"),
        )
    }

    fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds `other`'s observations (the round trips of several nodes together).
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: the add cannot run out of range.
        let _ = self.0.add(&other.0);
    }

    /// Observations.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0..=1) in µs; `None` without observations.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(q))
    }
}

impl Default for VoteLatencies {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles come from the observations themselves, not from bucket bounds, and
    /// merging adds two nodes' observations.
    #[test]
    fn vote_latency_percentiles_are_exact_to_three_digits() {
        let mut a = VoteLatencies::new();
        for us in 1..=1000 {
            a.record(Duration::from_micros(us * 10));
        }
        // Within 0.1% of the exact value (a bucket at 10 ms is 8 µs wide).
        let within = |got: Option<u64>, exact: u64| {
            let got = got.unwrap();
            assert!(got.abs_diff(exact) * 1000 <= exact, "{got} vs {exact}");
        };
        within(a.quantile_us(0.5), 5000);
        within(a.quantile_us(0.99), 9900);
        let mut b = VoteLatencies::new();
        b.record(Duration::from_secs(7200));
        a.merge(&b);
        assert_eq!(a.count(), 1001);
        // Longer than an hour counts as an hour (to three digits).
        let max = a.quantile_us(1.0).unwrap();
        assert!((3_599_000_000..=3_602_000_000).contains(&max), "{max}");
        assert_eq!(VoteLatencies::new().quantile_us(0.5), None);
    }
}
