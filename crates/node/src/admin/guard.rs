//! Who may use the admin API: the checks every request passes before a handler sees it.
//!
//! - On a loopback bind, the request's host (`Host`, or the authority of an absolute URI) must
//!   be `localhost`, `127.0.0.1`, `[::1]` or the bound address, with or without a port: a web
//!   page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its own name,
//!   and is refused (403).
//! - With a token configured, `Authorization: Bearer <token>` must carry it (401).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, Uri, header};

use super::metrics::Rejection;
use super::settings::Token;

/// The checks of one admin server.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    /// The bound address, when it is loopback: then the host is checked.
    loopback: Option<IpAddr>,
    /// The token, when one is configured.
    token: Option<Token>,
}

impl Guard {
    /// The checks for a server bound to `bound`, with `token` if one is configured.
    pub(crate) fn new(bound: IpAddr, token: Option<Token>) -> Self {
        Self {
            loopback: bound.is_loopback().then_some(bound),
            token,
        }
    }

    /// Whether a request with `uri` and `headers` may go on; the reason if not.
    pub(crate) fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        if let Some(bound) = self.loopback {
            // RFC 9112 §3.2.2: an absolute URI's authority wins over `Host`.
            let host = match uri.authority() {
                Some(authority) => Some(authority.as_str()),
                None => single(headers, header::HOST).and_then(|value| value.to_str().ok()),
            };
            if !host.is_some_and(|host| loopback_host(host, bound)) {
                return Err(Rejection::BadHost);
            }
        }
        if let Some(token) = &self.token {
            let mut values = headers.get_all(header::AUTHORIZATION).iter();
            let Some(value) = values.next() else {
                return Err(Rejection::MissingToken);
            };
            let presented = bearer(value.as_bytes()).filter(|_| values.next().is_none());
            if !presented.is_some_and(|presented| token.matches(presented)) {
                return Err(Rejection::WrongToken);
            }
        }
        Ok(())
    }
}

/// The header's value if it occurs exactly once.
fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<&header::HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    values.next().is_none().then_some(value)
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    let token = scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)?;
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether `host` (`name` or `name:port`) names this loopback server: `localhost` (any case),
/// `127.0.0.1`, `[::1]` or the address it is bound to.
fn loopback_host(host: &str, bound: IpAddr) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return port_ok
            && inside
                .parse::<Ipv6Addr>()
                .is_ok_and(|ip| ip == Ipv6Addr::LOCALHOST || IpAddr::V6(ip) == bound);
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if valid_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip == Ipv4Addr::LOCALHOST || IpAddr::V4(ip) == bound)
}

/// A port number: 1 to 5 digits.
fn valid_port(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn host(value: &str) -> HeaderMap {
        headers(&[(header::HOST, value)])
    }

    /// On loopback, only loopback names pass, with or without a port; elsewhere the host is
    /// not looked at.
    #[test]
    fn loopback_binds_accept_only_loopback_hosts() {
        let guard = Guard::new("127.0.0.1".parse().unwrap(), None);
        let path: Uri = "/metrics".parse().unwrap();
        for good in [
            "localhost",
            "LocalHost:9101",
            "127.0.0.1",
            "127.0.0.1:9101",
            "[::1]",
            "[::1]:9101",
        ] {
            assert_eq!(guard.check(&path, &host(good)), Ok(()), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:9101",
            "localhost.evil.example",
            "127.0.0.2",
            "127.0.0.1:",
            "127.0.0.1:port",
            "[::1",
            "[::2]:9101",
            "::1",
            "",
        ] {
            assert_eq!(
                guard.check(&path, &host(bad)),
                Err(Rejection::BadHost),
                "{bad}"
            );
        }
        // No Host, or two.
        assert_eq!(
            guard.check(&path, &HeaderMap::new()),
            Err(Rejection::BadHost)
        );
        let two = headers(&[(header::HOST, "localhost"), (header::HOST, "evil.example")]);
        assert_eq!(guard.check(&path, &two), Err(Rejection::BadHost));
        // An absolute URI's authority is what counts.
        let absolute: Uri = "http://evil.example/metrics".parse().unwrap();
        assert_eq!(
            guard.check(&absolute, &host("localhost")),
            Err(Rejection::BadHost)
        );
        // The bound address itself passes.
        let other = Guard::new("127.0.0.2".parse().unwrap(), None);
        assert_eq!(other.check(&path, &host("127.0.0.2:1")), Ok(()));
        let open = Guard::new("0.0.0.0".parse().unwrap(), None);
        assert_eq!(open.check(&path, &host("evil.example")), Ok(()));
    }

    /// With a token: none is 401 missing, anything but `Bearer <token>` is 401 wrong.
    #[test]
    fn a_token_must_come_as_bearer() {
        let guard = Guard::new("0.0.0.0".parse().unwrap(), Some(Token::new(TOKEN).unwrap()));
        let path: Uri = "/peers".parse().unwrap();
        let auth = |value: &str| headers(&[(header::AUTHORIZATION, value)]);
        assert_eq!(
            guard.check(&path, &HeaderMap::new()),
            Err(Rejection::MissingToken)
        );
        assert_eq!(
            guard.check(&path, &auth(&format!("Bearer {TOKEN}"))),
            Ok(())
        );
        assert_eq!(
            guard.check(&path, &auth(&format!("bearer  {TOKEN}"))),
            Ok(())
        );
        for wrong in [
            "Bearer nope".to_owned(),
            format!("Basic {TOKEN}"),
            TOKEN.to_owned(),
            "Bearer ".to_owned(),
            format!("Bearer {TOKEN}x"),
        ] {
            assert_eq!(
                guard.check(&path, &auth(&wrong)),
                Err(Rejection::WrongToken),
                "{wrong}"
            );
        }
        let twice = headers(&[
            (header::AUTHORIZATION, &format!("Bearer {TOKEN}")),
            (header::AUTHORIZATION, &format!("Bearer {TOKEN}")),
        ]);
        assert_eq!(guard.check(&path, &twice), Err(Rejection::WrongToken));
        // On loopback with a token, both checks apply, the host first.
        let both = Guard::new(
            "127.0.0.1".parse().unwrap(),
            Some(Token::new(TOKEN).unwrap()),
        );
        assert_eq!(
            both.check(&path, &host("evil.example")),
            Err(Rejection::BadHost)
        );
        assert_eq!(
            both.check(&path, &host("localhost")),
            Err(Rejection::MissingToken)
        );
    }
}
