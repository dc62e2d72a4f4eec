//! Serde for a [`Duration`] as a whole number of milliseconds, the unit config files use:
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Config {
//!     #[serde(rename = "timeout_ms", with = "netcore::serde_duration_ms")]
//!     timeout: Duration,
//! }
//!
//! let config: Config = serde_json::from_str(r#"{"timeout_ms": 1500}"#).unwrap();
//! assert_eq!(config.timeout, Duration::from_millis(1500));
//! ```
//!
//! Serializing drops any sub-millisecond part and saturates at `u64::MAX` milliseconds;
//! deserializing reads a `u64`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes `value` as whole milliseconds (a `u64`).
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    // Saturates: no timeout anyone configures is 584 million years long.
    serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
}

/// Reads whole milliseconds (a `u64`).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Config {
        #[serde(rename = "timeout_ms", with = "super")]
        timeout: Duration,
    }

    /// Whole milliseconds both ways; sub-millisecond parts are dropped, huge values saturate,
    /// and anything but a u64 is refused.
    #[test]
    fn durations_travel_as_whole_milliseconds() {
        let config = Config {
            timeout: Duration::from_micros(30_000_999),
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(json, r#"{"timeout_ms":30000}"#);
        assert_eq!(
            serde_json::from_str::<Config>(&json).unwrap().timeout,
            Duration::from_secs(30)
        );

        let huge = Config {
            timeout: Duration::MAX,
        };
        assert_eq!(
            serde_json::to_string(&huge).unwrap(),
            format!(r#"{{"timeout_ms":{}}}"#, u64::MAX)
        );
        for bad in [
            r#"{"timeout_ms":-1}"#,
            r#"{"timeout_ms":1.5}"#,
            r#"{"timeout_ms":"1"}"#,
        ] {
            assert!(serde_json::from_str::<Config>(bad).is_err(), "{bad}");
        }
    }
}
