//! [`Metrics`]: the prometheus metrics under `consensus`, their registration, the
//! [`Rejected`] label and the vote latency histogram's buckets, kept again to be read back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// The histogram's buckets again (not cumulative, +Inf last): prometheus-client does
    /// not let them be read back.
    vote_latency_buckets: Arc<[AtomicU64]>,
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
            vote_latency_buckets: (0..=VOTE_LATENCY_BUCKETS)
                .map(|_| AtomicU64::new(0))
                .collect(),
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

    pub(crate) fn observe_vote_latency(&self, seconds: f64) {
        self.vote_latency.observe(seconds);
        let bucket = exponential_buckets(
            VOTE_LATENCY_START,
            VOTE_LATENCY_FACTOR,
            VOTE_LATENCY_BUCKETS,
        )
        .position(|bound| seconds <= bound)
        .unwrap_or(usize::from(VOTE_LATENCY_BUCKETS));
        self.vote_latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
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

    /// The vote RPC latency histogram (`consensus_vote_rpc_latency_seconds`) as
    /// `(upper bound in seconds, observations in that bucket)`, in order, the last bound
    /// infinite; the counts are per bucket, not cumulative.
    pub fn vote_latency_buckets(&self) -> Vec<(f64, u64)> {
        exponential_buckets(
            VOTE_LATENCY_START,
            VOTE_LATENCY_FACTOR,
            VOTE_LATENCY_BUCKETS,
        )
        .chain([f64::INFINITY])
        .zip(self.vote_latency_buckets.iter())
        .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
        .collect()
    }
}
