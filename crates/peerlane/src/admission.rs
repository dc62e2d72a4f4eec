//! Who may start an inbound set-up, decided from the remote address alone, before any crypto:
//! pure logic the listener drives.
//!
//! - [`AdmissionConfig`]: per-IP and per-prefix (/24 for IPv4, /64 for IPv6) caps on set-ups in
//!   progress, and a per-IP accept rate (token bucket).
//! - [`Source`]: where a socket comes from, and whether that address is trusted. A set-up
//!   does not know its PeerId before the first Noise message, so trust is recognised by IP:
//!   an address is trusted when it is the IP of an `/ip4` or `/ip6` address of a peer in the
//!   trusted set (the connectivity manager's `trusted_ips`: seeds, discovery file, on-chain
//!   set, updated as they change). Trusted sources skip the per-IP caps and the rate, and
//!   their set-ups are never evicted. (Trusted peers known only by DNS name are not
//!   recognised here; they still get in through the caps, which a single flooding source
//!   cannot fill.)
//! - [`Prefix`]: the /24 or /64 an address is grouped by, also for the peer manager's caps on
//!   established inbound connections per IP and per prefix.
//! - [`decide`]: admit, admit by evicting a set-up of the heaviest source, or refuse.
//! - [`AcceptRate`]: the token buckets, one per IP, bounded in number.
//! - [`IpPrefix`] and [`IpBans`]: banned IPs and prefixes (`banned_ips`, and the network's
//!   `ban_ip`), whose sockets are closed at accept before anything else
//!   (`peerlane_connections_refused_total{reason="banned_ip"}`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use netcore::{NetworkAddress, Protocol};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Error;
use crate::metrics::SetupFailure;

/// Per-IP admission limits for inbound sockets: the `admission` section of a network config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// Set-ups in progress from one IP; a further socket from it is closed at once
    /// (`ip_pending_cap`). Default [`MAX_PENDING_PER_IP`].
    pub max_pending_per_ip: usize,
    /// Set-ups in progress from one /24 (IPv4) or /64 (IPv6); a further socket from it is
    /// closed at once (`prefix_pending_cap`). Default [`MAX_PENDING_PER_PREFIX`].
    pub max_pending_per_prefix: usize,
    /// Sockets one IP may open per second, on average; more are closed at once
    /// (`rate_limited`). 0 turns the rate off. Default [`ACCEPT_RATE_PER_IP`].
    pub accept_rate_per_ip: u32,
    /// Sockets one IP may open in a burst. Default [`ACCEPT_BURST_PER_IP`].
    pub accept_burst_per_ip: u32,
    /// Established inbound connections from peers outside the trusted set per IP; a further
    /// one is closed right after set-up (`too_many_from_ip`). Default [`MAX_INBOUND_PER_IP`].
    pub max_inbound_per_ip: usize,
    /// The same per /24 (IPv4) or /64 (IPv6) (`too_many_from_prefix`). Default
    /// [`MAX_INBOUND_PER_PREFIX`].
    pub max_inbound_per_prefix: usize,
}

/// See [`AdmissionConfig::max_pending_per_ip`].
pub const MAX_PENDING_PER_IP: usize = 4;
/// See [`AdmissionConfig::max_pending_per_prefix`].
pub const MAX_PENDING_PER_PREFIX: usize = 16;
/// See [`AdmissionConfig::accept_rate_per_ip`] (anemo's value).
pub const ACCEPT_RATE_PER_IP: u32 = 10;
/// See [`AdmissionConfig::accept_burst_per_ip`] (anemo's value).
pub const ACCEPT_BURST_PER_IP: u32 = 100;

/// See [`AdmissionConfig::max_inbound_per_ip`].
pub const MAX_INBOUND_PER_IP: usize = 8;
/// See [`AdmissionConfig::max_inbound_per_prefix`].
pub const MAX_INBOUND_PER_PREFIX: usize = 32;

/// IPs whose token buckets are kept; past it, full buckets (the same as none) are dropped,
/// and if that is not enough, all of them: memory stays bounded, and the rate fails open.
const MAX_TRACKED_IPS: usize = 4096;

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_pending_per_ip: MAX_PENDING_PER_IP,
            max_pending_per_prefix: MAX_PENDING_PER_PREFIX,
            accept_rate_per_ip: ACCEPT_RATE_PER_IP,
            accept_burst_per_ip: ACCEPT_BURST_PER_IP,
            max_inbound_per_ip: MAX_INBOUND_PER_IP,
            max_inbound_per_prefix: MAX_INBOUND_PER_PREFIX,
        }
    }
}

/// The network prefix an address is grouped by: its /24 (IPv4) or /64 (IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Prefix {
    V4([u8; 3]),
    V6(u64),
    /// A socket without an IP (the memory transport): all in one group.
    None,
}

/// Where an accepted socket comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) ip: Option<IpAddr>,
    pub(crate) prefix: Prefix,
    pub(crate) trusted: bool,
}

impl Source {
    /// The source of a socket from `remote`, trusted if its IP is in `trusted_ips`.
    pub(crate) fn of(remote: &NetworkAddress, trusted_ips: &HashSet<IpAddr>) -> Self {
        let ip = ip_of(remote);
        let trusted = ip.is_some_and(|ip| trusted_ips.contains(&ip));
        Self {
            ip,
            prefix: Prefix::of(ip),
            trusted,
        }
    }
}

impl Prefix {
    /// The /24 or /64 of `ip`.
    pub(crate) fn of(ip: Option<IpAddr>) -> Self {
        match ip {
            Some(IpAddr::V4(ip)) => {
                let [a, b, c, _] = ip.octets();
                Self::V4([a, b, c])
            }
            Some(IpAddr::V6(ip)) => Self::V6((u128::from(ip) >> 64) as u64),
            None => Self::None,
        }
    }
}

/// The IP of an `/ip4` or `/ip6` address.
pub(crate) fn ip_of(addr: &NetworkAddress) -> Option<IpAddr> {
    match addr.protocols().first() {
        Some(Protocol::Ip4(ip)) => Some(IpAddr::V4(*ip)),
        Some(Protocol::Ip6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// What to do with a newly accepted socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start its set-up.
    Admit,
    /// Close the set-up at this index of the pending list (oldest first), then start this one.
    Evict(usize),
    /// Close the socket at once, for this reason.
    Refuse(SetupFailure),
}

/// Decides on a socket from `new`, with `pending` the sources of the set-ups in progress
/// (oldest first) and `max_pending` the network's cap on them.
///
/// At the cap, the evicted set-up is the oldest one of the heaviest untrusted source: the /24
/// or /64 with the most set-ups in progress. A flood from one prefix so only pushes out its
/// own sockets, and a trusted source's set-up is never closed.
pub(crate) fn decide(
    config: &AdmissionConfig,
    max_pending: usize,
    pending: &[Source],
    new: &Source,
) -> Decision {
    if !new.trusted && new.ip.is_some() {
        let same_ip = pending.iter().filter(|s| s.ip == new.ip).count();
        if same_ip >= config.max_pending_per_ip {
            return Decision::Refuse(SetupFailure::IpPendingCap);
        }
        let same_prefix = pending.iter().filter(|s| s.prefix == new.prefix).count();
        if same_prefix >= config.max_pending_per_prefix {
            return Decision::Refuse(SetupFailure::PrefixPendingCap);
        }
    }
    if pending.len() < max_pending {
        return Decision::Admit;
    }
    let mut per_prefix: HashMap<Prefix, usize> = HashMap::new();
    for source in pending.iter().filter(|s| !s.trusted) {
        *per_prefix.entry(source.prefix).or_default() += 1;
    }
    // Ties go to the prefix whose oldest set-up is oldest, so eviction stays oldest-first.
    let mut heaviest: Option<(Prefix, usize)> = None;
    for source in pending.iter().filter(|s| !s.trusted) {
        let count = per_prefix[&source.prefix];
        if heaviest.is_none_or(|(_, most)| count > most) {
            heaviest = Some((source.prefix, count));
        }
    }
    let heaviest = heaviest.map(|(prefix, _)| prefix);
    match heaviest {
        Some(prefix) => {
            let oldest = pending
                .iter()
                .position(|s| !s.trusted && s.prefix == prefix)
                .expect("the heaviest prefix has a set-up");
            Decision::Evict(oldest)
        }
        None => Decision::Refuse(SetupFailure::PendingCap),
    }
}

/// One token bucket per IP: `rate` tokens a second, up to `burst`.
#[derive(Debug)]
pub(crate) struct AcceptRate {
    rate: u32,
    burst: u32,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl AcceptRate {
    pub(crate) fn new(config: &AdmissionConfig) -> Self {
        Self {
            rate: config.accept_rate_per_ip,
            burst: config.accept_burst_per_ip.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `ip` at `now`; false when its bucket is empty.
    pub(crate) fn try_take(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED_IPS && !self.buckets.contains_key(&ip) {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets
                .retain(|_, bucket| bucket.refill(now, rate, burst) < f64::from(burst));
            if self.buckets.len() >= MAX_TRACKED_IPS {
                self.buckets.clear();
            }
        }
        let burst = f64::from(self.burst);
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.refill(now, self.rate, self.burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Bucket {
    /// Adds the tokens earned since the last update; returns the new count.
    fn refill(&mut self, now: Instant, rate: u32, burst: u32) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        self.updated = now;
        self.tokens
    }
}

/// An IP address or a CIDR prefix, written `10.1.2.3`, `10.1.2.0/24`, `2001:db8::1` or
/// `2001:db8::/32` (in config files and the admin API alike). A bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    /// The address with the bits past the prefix length cleared.
    network: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// The prefix of `len` bits of `ip`; `None` if `len` is longer than the address.
    pub fn new(ip: IpAddr, len: u8) -> Option<Self> {
        let network = match ip {
            IpAddr::V4(ip) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(ip) & mask).into())
            }
            IpAddr::V6(ip) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(ip) & mask).into())
            }
            _ => return None,
        };
        Some(Self { network, len })
    }

    /// The address with the bits past the prefix length cleared.
    pub fn ip(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits (32 or 128 for one address).
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Self::new(ip, self.len).is_some_and(|prefix| prefix == *self)
    }
}

impl FromStr for IpPrefix {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || Error::InvalidIpPrefix {
            text: text.to_owned(),
        };
        let (ip, len) = match text.split_once('/') {
            Some((ip, len)) => (ip, Some(len.parse::<u8>().map_err(|_| invalid())?)),
            None => (text, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
        let len = len.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
        Self::new(ip, len).ok_or_else(invalid)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl Serialize for IpPrefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The banned IP prefixes of a network, shared by its listener and its handle. A ban is
/// permanent (`None`) or lifts itself at its expiry (a tokio instant, so tests can move it
/// with a paused clock); expired bans are dropped at the next change. A linear scan per
/// accepted socket: ban lists are short, and the scan is far cheaper than the set-up it
/// saves.
#[derive(Clone, Debug, Default)]
pub(crate) struct IpBans(Arc<RwLock<Vec<IpBan>>>);

/// A banned prefix and when its ban ends (`None`: until lifted).
type IpBan = (IpPrefix, Option<Instant>);

impl IpBans {
    pub(crate) fn new(prefixes: impl IntoIterator<Item = IpPrefix>) -> Self {
        let bans = Self::default();
        for prefix in prefixes {
            bans.insert_until(prefix, None);
        }
        bans
    }

    /// Bans `prefix` until `expiry` (`None`: until lifted), unless a longer ban on it is in
    /// force; returns whether it was not banned yet.
    pub(crate) fn insert_until(&self, prefix: IpPrefix, expiry: Option<Instant>) -> bool {
        let now = Instant::now();
        let mut list = self.0.write().unwrap_or_else(|poison| poison.into_inner());
        list.retain(|(_, ban)| is_active(*ban, now));
        if let Some((_, current)) = list.iter_mut().find(|(banned, _)| *banned == prefix) {
            *current = match (*current, expiry) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
            return false;
        }
        list.push((prefix, expiry));
        list.sort();
        true
    }

    /// Lifts the ban on `prefix` (exactly as banned); returns whether it was banned.
    pub(crate) fn remove(&self, prefix: IpPrefix) -> bool {
        let now = Instant::now();
        let mut list = self.0.write().unwrap_or_else(|poison| poison.into_inner());
        list.retain(|(_, ban)| is_active(*ban, now));
        let before = list.len();
        list.retain(|(banned, _)| *banned != prefix);
        list.len() != before
    }

    /// Whether `ip` is inside a prefix banned now.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let list = self.0.read().unwrap_or_else(|poison| poison.into_inner());
        list.iter()
            .any(|(prefix, ban)| is_active(*ban, now) && prefix.contains(ip))
    }

    /// The prefixes banned now with their expiry (`None`: until lifted), sorted.
    pub(crate) fn entries(&self) -> Vec<IpBan> {
        let now = Instant::now();
        self.0
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .filter(|(_, ban)| is_active(*ban, now))
            .copied()
            .collect()
    }

    /// The prefixes banned now, sorted.
    pub(crate) fn to_vec(&self) -> Vec<IpPrefix> {
        self.entries()
            .into_iter()
            .map(|(prefix, _)| prefix)
            .collect()
    }
}

/// Whether a ban with this expiry is in force at `now`.
fn is_active(expiry: Option<Instant>, now: Instant) -> bool {
    expiry.is_none_or(|expiry| now < expiry)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A timed IP ban stops matching at its expiry and is no longer listed; a permanent or
    /// longer ban on the same prefix is not shortened.
    #[tokio::test(start_paused = true)]
    async fn timed_ip_bans_expire_and_longer_bans_win() {
        let bans = IpBans::default();
        let (a, b): (IpPrefix, IpPrefix) = (
            "10.1.0.0/16".parse().unwrap(),
            "10.2.0.0/16".parse().unwrap(),
        );
        let soon = Instant::now() + Duration::from_secs(10);
        assert!(bans.insert_until(a, Some(soon)));
        assert!(bans.insert_until(b, None));
        assert!(!bans.insert_until(b, Some(soon)));
        assert!(!bans.insert_until(a, Some(soon - Duration::from_secs(5))));
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(bans.contains(ip));
        assert_eq!(bans.entries(), vec![(a, Some(soon)), (b, None)]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!bans.contains(ip));
        assert_eq!(bans.to_vec(), vec![b]);
        assert!(!bans.remove(a));
        assert!(bans.insert_until(a, None));
    }

    fn source(addr: &str, trusted: bool) -> Source {
        let mut trusted_ips = HashSet::new();
        let addr: NetworkAddress = format!("/ip4/{addr}/tcp/1").parse().unwrap();
        if trusted {
            trusted_ips.insert(ip_of(&addr).unwrap());
        }
        Source::of(&addr, &trusted_ips)
    }

    #[test]
    fn per_ip_and_per_prefix_caps_refuse_untrusted_sources_only() {
        let config = AdmissionConfig::default();
        let flood = vec![source("10.0.0.1", false); MAX_PENDING_PER_IP];
        assert_eq!(
            decide(&config, 100, &flood, &source("10.0.0.1", false)),
            Decision::Refuse(SetupFailure::IpPendingCap)
        );
        assert_eq!(
            decide(&config, 100, &flood, &source("10.0.0.1", true)),
            Decision::Admit
        );
        let prefix: Vec<_> = (0..MAX_PENDING_PER_PREFIX)
            .map(|i| source(&format!("10.0.0.{}", i + 10), false))
            .collect();
        assert_eq!(
            decide(&config, 100, &prefix, &source("10.0.0.99", false)),
            Decision::Refuse(SetupFailure::PrefixPendingCap)
        );
        assert_eq!(
            decide(&config, 100, &prefix, &source("10.0.1.1", false)),
            Decision::Admit
        );
    }

    #[test]
    fn at_the_cap_the_heaviest_untrusted_prefix_loses_its_oldest_set_up() {
        let config = AdmissionConfig::default();
        let pending = vec![
            source("10.0.0.1", true),
            source("10.0.1.1", false),
            source("10.0.2.1", false),
            source("10.0.2.2", false),
            source("10.0.2.1", true),
        ];
        assert_eq!(
            decide(&config, 5, &pending, &source("10.0.3.1", false)),
            Decision::Evict(2)
        );
        let all_trusted = vec![source("10.0.0.1", true); 3];
        assert_eq!(
            decide(&config, 3, &all_trusted, &source("10.0.3.1", false)),
            Decision::Refuse(SetupFailure::PendingCap)
        );
    }

    #[test]
    fn the_accept_rate_allows_a_burst_then_the_rate() {
        let config = AdmissionConfig::default();
        let mut rate = AcceptRate::new(&config);
        let (ip, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        let taken = (0..1000).filter(|_| rate.try_take(ip, start)).count();
        assert_eq!(taken, ACCEPT_BURST_PER_IP as usize);
        assert!(rate.try_take(other, start));
        let later = start + Duration::from_secs(1);
        let taken = (0..1000).filter(|_| rate.try_take(ip, later)).count();
        assert_eq!(taken, ACCEPT_RATE_PER_IP as usize);
    }

    #[test]
    fn ip_prefixes_parse_and_match() {
        let prefix: IpPrefix = "10.1.2.77/24".parse().unwrap();
        assert_eq!(prefix.to_string(), "10.1.2.0/24");
        assert!(prefix.contains("10.1.2.1".parse().unwrap()));
        assert!(!prefix.contains("10.1.3.1".parse().unwrap()));
        assert!(!prefix.contains("::1".parse().unwrap()));
        let one: IpPrefix = "127.0.0.3".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.3/32");
        let v6: IpPrefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        let all: IpPrefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.1.2.3/33", "10.1.2/24", "::/129", "x", "10.0.0.0/", ""] {
            assert!(bad.parse::<IpPrefix>().is_err(), "{bad}");
        }
    }

    /// In config files: an `admission` section with defaults for missing fields, and
    /// `banned_ips` as strings.
    #[test]
    fn admission_settings_and_banned_ips_read_from_config_files() {
        let config: crate::NetworkConfig = serde_json::from_str(
            r#"{"admission": {"max_pending_per_ip": 2}, "banned_ips": ["10.0.0.0/8", "::1"]}"#,
        )
        .unwrap();
        assert_eq!(config.admission.max_pending_per_ip, 2);
        assert_eq!(config.admission.accept_rate_per_ip, ACCEPT_RATE_PER_IP);
        let banned: Vec<String> = config.banned_ips.iter().map(ToString::to_string).collect();
        assert_eq!(banned, ["10.0.0.0/8", "::1/128"]);
        let bad =
            serde_json::from_str::<crate::NetworkConfig>(r#"{"banned_ips": ["10.0.0.0/40"]}"#);
        assert!(bad.is_err());
    }
}
