//! [`BanList`]: the banned peers of a network.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use netcore::PeerId;
use tokio::time::Instant;

/// The banned peers of a network, shared by its [`Network`](crate::Network) handle (which
/// changes it) and its peer manager (which refuses their connections and dials, and bans peers
/// it closed for rate limiting). A ban is permanent (`None`) or lifts itself at its expiry (a
/// tokio instant, so tests can move it with a paused clock); expired bans are forgotten when
/// next looked at, so the list holds at most one entry per peer ever banned and not yet
/// looked up again.
#[derive(Clone, Debug, Default)]
pub(crate) struct BanList(Arc<RwLock<HashMap<PeerId, Option<Instant>>>>);

impl BanList {
    /// Bans `peer_id` until `expiry` (`None`: until unbanned), unless a longer ban is in force;
    /// whether it was not banned yet.
    pub(crate) fn insert_until(&self, peer_id: PeerId, expiry: Option<Instant>) -> bool {
        let now = Instant::now();
        let mut bans = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let current = bans
            .get(&peer_id)
            .copied()
            .filter(|ban| is_active(*ban, now));
        let longest = match (current, expiry) {
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
            (None, Some(b)) => Some(b),
        };
        bans.insert(peer_id, longest);
        current.is_none()
    }

    /// Lifts the ban on `peer_id`; whether it was banned.
    pub(crate) fn remove(&self, peer_id: PeerId) -> bool {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&peer_id)
            .is_some_and(|ban| is_active(ban, Instant::now()))
    }

    /// `peer_id`'s ban if it is banned now: `Some(None)` for one without expiry,
    /// `Some(Some(expiry))` for one that lifts itself.
    pub(crate) fn expiry(&self, peer_id: PeerId) -> Option<Option<Instant>> {
        let now = Instant::now();
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer_id)
            .copied()
            .filter(|ban| is_active(*ban, now))
    }

    /// Whether `peer_id` is banned now.
    pub(crate) fn contains(&self, peer_id: PeerId) -> bool {
        let now = Instant::now();
        let ban = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer_id)
            .copied();
        match ban {
            Some(ban) if is_active(ban, now) => true,
            Some(_) => {
                // Expired: forget it (unless it was renewed in between).
                let mut bans = self.0.write().unwrap_or_else(PoisonError::into_inner);
                if bans.get(&peer_id).is_some_and(|ban| !is_active(*ban, now)) {
                    bans.remove(&peer_id);
                }
                false
            }
            None => false,
        }
    }

    /// How long the ban on `peer_id` lasts, for a log line: `"until <RFC 3339 time>"`,
    /// `"until unbanned"`, or `None` if the peer is not banned now.
    pub(crate) fn describe(&self, peer_id: PeerId) -> Option<String> {
        let now = Instant::now();
        let ban = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer_id)
            .copied()
            .filter(|ban| is_active(*ban, now))?;
        Some(match ban {
            None => "until unbanned".to_owned(),
            Some(expiry) => {
                let at = std::time::SystemTime::now() + expiry.saturating_duration_since(now);
                format!("until {}", humantime::format_rfc3339_seconds(at))
            }
        })
    }

    /// The peers banned now with their expiry (`None`: until unbanned), sorted by peer.
    pub(crate) fn entries(&self) -> Vec<(PeerId, Option<Instant>)> {
        let now = Instant::now();
        let mut bans: Vec<(PeerId, Option<Instant>)> = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, ban)| is_active(**ban, now))
            .map(|(peer_id, ban)| (*peer_id, *ban))
            .collect();
        bans.sort_by_key(|(peer_id, _)| *peer_id);
        bans
    }

    /// The peers banned now, sorted.
    pub(crate) fn to_vec(&self) -> Vec<PeerId> {
        let now = Instant::now();
        let mut peers: Vec<PeerId> = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, ban)| is_active(**ban, now))
            .map(|(peer_id, _)| *peer_id)
            .collect();
        peers.sort();
        peers
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

    /// A timed ban lifts itself at its expiry; a longer or permanent ban is not shortened by
    /// a shorter one.
    #[tokio::test(start_paused = true)]
    async fn timed_bans_expire_and_longer_bans_win() {
        let (a, b) = (PeerId::new([1; 32]), PeerId::new([2; 32]));
        let bans = BanList::default();
        let soon = Instant::now() + Duration::from_secs(10);
        assert!(bans.insert_until(a, Some(soon)));
        assert!(bans.insert_until(b, None));
        // A shorter ban does not shorten a permanent one, nor a longer one.
        assert!(!bans.insert_until(b, Some(soon)));
        assert!(!bans.insert_until(a, Some(soon - Duration::from_secs(5))));
        assert_eq!(bans.to_vec(), vec![a, b]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!bans.contains(a));
        assert!(bans.contains(b));
        assert_eq!(bans.to_vec(), vec![b]);
        assert!(!bans.remove(a));
        // A ban after expiry counts as new.
        assert!(bans.insert_until(a, Some(Instant::now() + Duration::from_secs(1))));
    }
}
