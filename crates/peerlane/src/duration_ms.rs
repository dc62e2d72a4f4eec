//! Serde for a [`Duration`] written as whole milliseconds: the `<name>_ms` keys of config files
//! (`#[serde(rename = "<name>_ms", with = "crate::duration_ms")]`), as `peer::Config` does.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    // Saturates past u64::MAX ms (585 million years); no setting comes near it.
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}
