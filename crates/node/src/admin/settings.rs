//! The admin API's settings: the `[admin]` table of the node's config file with the `--admin*`
//! flags over it, and the bearer token, read from a file or from `PEERLANE_ADMIN_TOKEN`. An
//! address that is not loopback without a token is refused here, before anything runs.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The environment variable that may hold the token itself.
pub(crate) const TOKEN_ENV: &str = "PEERLANE_ADMIN_TOKEN";
/// Default of `admin.header_timeout_ms`: the time a connection has to send a complete request
/// head, on connecting and between keep-alive requests.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `admin.max_connections`.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// The most `admin.header_timeout_ms` may be (5 minutes).
const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(300);
/// The most `admin.max_connections` may be.
const MAX_MAX_CONNECTIONS: usize = 1024;
/// A token's length bounds, in bytes: short ones are guessable, and it must fit a header.
const TOKEN_LEN: std::ops::RangeInclusive<usize> = 16..=1024;

/// The `[admin]` table of the config file; the `--admin*` flags override its fields. Every
/// field is optional; unknown ones are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AdminConfig {
    /// Where to serve the admin API; none serves nothing. Default none.
    pub(crate) address: Option<SocketAddr>,
    /// A file holding the bearer token (surrounding whitespace ignored). Default none.
    pub(crate) token_file: Option<PathBuf>,
    /// The time a connection has to send a complete request head. Default
    /// [`HEADER_TIMEOUT`].
    #[serde(rename = "header_timeout_ms", with = "netcore::serde_duration_ms")]
    pub(crate) header_timeout: Duration,
    /// The most connections served at once; more are answered 503 and closed. Default
    /// [`MAX_CONNECTIONS`].
    pub(crate) max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: None,
            token_file: None,
            header_timeout: HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// What the admin server runs with.
#[derive(Clone, Debug)]
pub(crate) struct AdminSettings {
    /// Where to listen.
    pub(crate) address: SocketAddr,
    /// The bearer token every request must carry, if one is configured.
    pub(crate) token: Option<Token>,
    /// The time a connection has to send a complete request head.
    pub(crate) header_timeout: Duration,
    /// The most connections served at once.
    pub(crate) max_connections: usize,
}

impl AdminConfig {
    /// The settings, with the token from `token_file` or from `env_token` (the value of
    /// [`TOKEN_ENV`], if set); `None` without an address. Errors name the setting.
    pub(crate) fn resolve(
        &self,
        env_token: Option<std::ffi::OsString>,
    ) -> anyhow::Result<Option<AdminSettings>> {
        if !(Duration::from_millis(1)..=MAX_HEADER_TIMEOUT).contains(&self.header_timeout) {
            bail!(
                "admin.header_timeout_ms: must be 1 to {}",
                MAX_HEADER_TIMEOUT.as_millis()
            );
        }
        if !(1..=MAX_MAX_CONNECTIONS).contains(&self.max_connections) {
            bail!("admin.max_connections: must be 1 to {MAX_MAX_CONNECTIONS}");
        }
        let Some(address) = self.address else {
            return Ok(None);
        };
        let token = match (&self.token_file, env_token) {
            (Some(_), Some(_)) => bail!(
                "admin token: both a token file and {TOKEN_ENV} are set; set only one of them"
            ),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read admin token file {}", path.display()))?;
                let token = Token::new(text.trim()).map_err(|reason| {
                    anyhow::anyhow!("admin token file {}: {reason}", path.display())
                })?;
                warn_if_shared(path);
                Some(token)
            }
            (None, Some(value)) => {
                let Some(text) = value.to_str() else {
                    bail!("{TOKEN_ENV}: not UTF-8");
                };
                Some(
                    Token::new(text.trim())
                        .map_err(|reason| anyhow::anyhow!("{TOKEN_ENV}: {reason}"))?,
                )
            }
            (None, None) => None,
        };
        if token.is_none() && !address.ip().is_loopback() {
            bail!(
                "admin address {address}: not a loopback address, so it needs a token \
                 (--admin-token-file, admin.token_file or {TOKEN_ENV})"
            );
        }
        Ok(Some(AdminSettings {
            address,
            token,
            header_timeout: self.header_timeout,
            max_connections: self.max_connections,
        }))
    }
}

/// Logs a warning if users other than the owner may read the token file (a secret, like the
/// key file `peerlane keygen` writes with mode 0600).
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", metadata.permissions().mode() & 0o777),
                "the admin token file is readable by other users; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The admin API's bearer token. Only its SHA-256 digest is kept, and a presented token is
/// compared digest to digest in constant time, so neither its bytes nor its length leak
/// through timing.
#[derive(Clone)]
pub(crate) struct Token {
    digest: [u8; 32],
}

impl Token {
    /// A token: 16 to 1024 visible ASCII characters (what a header value carries as is).
    pub(crate) fn new(text: &str) -> Result<Self, String> {
        if !TOKEN_LEN.contains(&text.len()) {
            return Err(format!(
                "the token must be {} to {} characters",
                TOKEN_LEN.start(),
                TOKEN_LEN.end()
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be visible ASCII characters, without spaces".into());
        }
        Ok(Self {
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// Whether `presented` is this token, in constant time.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        presented.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not even the digest: it would let anyone who sees a log test guesses offline.
        f.write_str("Token(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn config(address: &str) -> AdminConfig {
        AdminConfig {
            address: Some(address.parse().unwrap()),
            ..AdminConfig::default()
        }
    }

    /// A loopback address needs no token; any other address does, from the environment or a
    /// file, never both.
    #[test]
    fn a_non_loopback_address_needs_a_token() {
        for loopback in ["127.0.0.1:0", "[::1]:9101", "127.0.0.2:1"] {
            let settings = config(loopback).resolve(None).unwrap().unwrap();
            assert!(settings.token.is_none());
            assert_eq!(settings.header_timeout, Duration::from_secs(10));
            assert_eq!(settings.max_connections, 16);
        }
        for open in ["0.0.0.0:9101", "[::]:9101", "10.0.0.1:9101"] {
            let err = config(open).resolve(None).unwrap_err().to_string();
            assert!(
                err.contains("needs a token") && err.contains(TOKEN_ENV),
                "{err}"
            );
            let settings = config(open).resolve(Some(TOKEN.into())).unwrap().unwrap();
            assert!(settings.token.unwrap().matches(TOKEN.as_bytes()));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let from_file = AdminConfig {
            token_file: Some(file),
            ..config("0.0.0.0:1")
        };
        let token = from_file.resolve(None).unwrap().unwrap().token.unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
        let err = from_file.resolve(Some(TOKEN.into())).unwrap_err();
        assert!(err.to_string().contains("only one"), "{err}");
        // No address: nothing served, whatever else is set.
        assert!(AdminConfig::default().resolve(None).unwrap().is_none());
    }

    /// A token is compared whole: a prefix, a longer string or another case does not match.
    #[test]
    fn tokens_match_exactly() {
        let token = Token::new(TOKEN).unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
        assert!(!token.matches(&TOKEN.as_bytes()[..TOKEN.len() - 1]));
        assert!(!token.matches(format!("{TOKEN}x").as_bytes()));
        assert!(!token.matches(TOKEN.to_uppercase().as_bytes()));
        assert!(!token.matches(b""));
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it!").is_err());
        assert!(Token::new(&"x".repeat(1025)).is_err());
        assert_eq!(format!("{token:?}"), "Token(..)");
    }

    /// Limits out of range are refused, naming the setting.
    #[test]
    fn limits_are_bounded() {
        let mut bad = config("127.0.0.1:0");
        bad.header_timeout = Duration::ZERO;
        let err = bad.resolve(None).unwrap_err().to_string();
        assert!(err.starts_with("admin.header_timeout_ms:"), "{err}");
        let mut bad = config("127.0.0.1:0");
        bad.max_connections = 0;
        let err = bad.resolve(None).unwrap_err().to_string();
        assert!(err.starts_with("admin.max_connections:"), "{err}");
    }
}
