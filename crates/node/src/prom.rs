//! Reading numbers back out of the prometheus text encoding of the nodes' registries.

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The metric name as encoded (counters end in `_total`).
    pub(crate) name: String,
    /// The labels, by name.
    pub(crate) labels: BTreeMap<String, String>,
    /// The value.
    pub(crate) value: f64,
}

/// The samples of a prometheus text exposition (comments skipped; unparsable lines ignored).
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut map = BTreeMap::new();
    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=')?;
        map.insert(
            key.trim_start_matches(',').to_owned(),
            value.trim_matches('"').to_owned(),
        );
    }
    Some(Sample {
        name: name.to_owned(),
        labels: map,
        value,
    })
}

/// The sum of `name`'s samples whose labels include every pair of `with`.
pub(crate) fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    matching(samples, name, with).map(|s| s.value).sum()
}

/// `name`'s samples whose labels include `with`, summed by the value of label `by`.
pub(crate) fn sum_by(
    samples: &[Sample],
    name: &str,
    with: &[(&str, &str)],
    by: &str,
) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for sample in matching(samples, name, with) {
        if let Some(key) = sample.labels.get(by) {
            *sums.entry(key.clone()).or_insert(0.0) += sample.value;
        }
    }
    sums
}

fn matching<'a>(
    samples: &'a [Sample],
    name: &'a str,
    with: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples.iter().filter(move |s| {
        s.name == name
            && with
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// The `q` quantile (0..=1), in seconds, of histogram `name` summed over every sample set,
/// interpolated linearly inside the bucket it falls in; `None` without observations.
pub(crate) fn histogram_quantile(samples: &[Sample], name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.name == bucket) {
        let le = sample.labels.get("le")?;
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        // Keyed by the bound's bits: positive floats order like their bits.
        buckets.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += sample.value;
    }
    let total = buckets.values().last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, cumulative) in buckets.into_values() {
        if cumulative >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let share = if cumulative > below {
                (rank - below) / (cumulative - below)
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * share);
        }
        lower = bound;
        below = cumulative;
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_total X.
x_total{network="validator",kind="direct_send",direction="sent"} 3
x_total{network="public",kind="direct_send",direction="sent"} 4
x_total{network="public",kind="rpc_request",direction="received"} 5
h_bucket{le="0.001"} 10
h_bucket{le="0.002"} 20
h_bucket{le="+Inf"} 20
h_bucket{le="0.001"} 0
h_bucket{le="0.002"} 0
h_bucket{le="+Inf"} 0
"#;

    /// Sums filter by labels and group by one; a histogram's quantile interpolates.
    #[test]
    fn sums_and_quantiles() {
        let samples = parse(TEXT);
        assert_eq!(sum(&samples, "x_total", &[]), 12.0);
        assert_eq!(sum(&samples, "x_total", &[("direction", "sent")]), 7.0);
        let by = sum_by(&samples, "x_total", &[], "kind");
        assert_eq!(by["direct_send"], 7.0);
        assert_eq!(by["rpc_request"], 5.0);
        let p50 = histogram_quantile(&samples, "h", 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p75 = histogram_quantile(&samples, "h", 0.75).unwrap();
        assert!((p75 - 0.0015).abs() < 1e-9, "{p75}");
        assert_eq!(histogram_quantile(&samples, "none", 0.5), None);
    }
}
