//! Redirect URI rules: what may be registered, and how a requested URI matches a
//! registered one (exact string match, except that loopback redirects may vary the
//! port, RFC 8252 §7.3).

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI {0:?} is not an absolute URI")]
    NotAbsolute(String),
    #[error("redirect URI {0:?} must not contain a fragment")]
    Fragment(String),
    #[error("redirect URI {0:?} must use https, or http on a loopback host (127.0.0.1, [::1], localhost)")]
    InsecureHttp(String),
    #[error("redirect URI {0:?} uses a forbidden scheme")]
    ForbiddenScheme(String),
    #[error("redirect URI {0:?} uses a private-use scheme that is not in reverse domain name form (like com.example.app:/callback)")]
    NotReverseDomainScheme(String),
    #[error("redirect URI {0:?} must not carry credentials")]
    Credentials(String),
    #[error("redirect URI is too long")]
    TooLong,
}

/// What a registrable redirect URI points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// An https URL.
    Https,
    /// An http URL on a loopback host (RFC 8252 §7.3).
    Loopback,
    /// A private-use URI scheme of a native app (RFC 8252 §7.1).
    PrivateUse,
}

impl RedirectKind {
    /// Whether the URI is an http(s) URL (https, or http on loopback), as opposed
    /// to a private-use scheme. Loopback URLs count although RFC 8252 treats them
    /// as native-app redirects: what matters here is the scheme, not the app type.
    pub fn is_http_url(self) -> bool {
        matches!(self, RedirectKind::Https | RedirectKind::Loopback)
    }
}

/// Longest redirect URI we store.
pub const MAX_REDIRECT_URI_BYTES: usize = 2048;

/// Whether a URL's host is `localhost` or a loopback address.
pub fn is_loopback_host(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "vbscript",
    "file",
    "about",
    "blob",
    "ftp",
    "ws",
    "wss",
];

/// Whether `uri` may be registered, and what kind of redirect it is: at most
/// [`MAX_REDIRECT_URI_BYTES`], absolute, no fragment, no userinfo; https, http on
/// loopback, or a reverse-domain private-use scheme for native apps (RFC 8252 §7.1).
/// Which kinds a client may use depends on its application type
/// (`registration_policy`).
pub fn validate_registered(uri: &str) -> Result<RedirectKind, RedirectUriError> {
    if uri.len() > MAX_REDIRECT_URI_BYTES {
        return Err(RedirectUriError::TooLong);
    }
    let parsed = url::Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute(uri.into()))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment(uri.into()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RedirectUriError::Credentials(uri.into()));
    }
    match parsed.scheme() {
        "https" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(RedirectUriError::NotAbsolute(uri.into()));
            }
            Ok(RedirectKind::Https)
        }
        "http" => {
            if parsed.host().is_some_and(is_loopback_host) {
                Ok(RedirectKind::Loopback)
            } else {
                Err(RedirectUriError::InsecureHttp(uri.into()))
            }
        }
        s if FORBIDDEN_SCHEMES.contains(&s) => Err(RedirectUriError::ForbiddenScheme(uri.into())),
        // RFC 8252 §7.1: a private-use scheme names a domain the app's publisher
        // controls, reversed. A dot-less scheme (`mailto:`, `tel:`, `myapp:`) is
        // either another program's or one that any app may claim.
        s if s.contains('.') => Ok(RedirectKind::PrivateUse),
        _ => Err(RedirectUriError::NotReverseDomainScheme(uri.into())),
    }
}

/// Whether a requested redirect URI matches one registered URI.
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    // RFC 8252 §7.3: for loopback IP redirects the port may vary. We also apply it
    // to `localhost`, which several native clients register.
    if reg.scheme() != "http" || req.scheme() != "http" {
        return false;
    }
    let (Some(reg_host), Some(req_host)) = (reg.host_str(), req.host_str()) else {
        return false;
    };
    if !reg.host().is_some_and(is_loopback_host) || !reg_host.eq_ignore_ascii_case(req_host) {
        return false;
    }
    // Only the port may differ. The requested URI must already be in canonical
    // form (no dot segments, no upper-case host, no userinfo, no fragment), and with
    // the registered port put back it must equal the registered URI exactly.
    if !is_canonical(requested, &req) {
        return false;
    }
    let mut with_registered_port = req.clone();
    if with_registered_port.set_port(reg.port()).is_err() {
        return false;
    }
    with_registered_port.as_str() == reg.as_str()
        && req.fragment().is_none()
        && req.username().is_empty()
        && req.password().is_none()
}

/// Whether `raw` is byte-identical to its parsed form (allowing only the `/` the
/// parser adds to an empty path).
fn is_canonical(raw: &str, parsed: &url::Url) -> bool {
    let normal = parsed.as_str();
    raw == normal
        || (parsed.path() == "/"
            && normal.len() == raw.len() + 1
            && normal.starts_with(raw)
            && normal.ends_with('/'))
}

/// Finds the registered URI the request may use. With no `redirect_uri` in the
/// request, a client with exactly one registered URI uses it.
pub fn resolve<'a>(registered: &'a [String], requested: Option<&'a str>) -> Option<&'a str> {
    match requested {
        Some(req) => registered.iter().any(|r| matches(r, req)).then_some(req),
        None if registered.len() == 1 => registered.first().map(String::as_str),
        None => None,
    }
}

/// The host (and port) shown on the consent page.
pub fn display_host(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => format!("{}:", u.scheme()),
        },
        Err(_) => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registration_rules() {
        assert!(validate_registered("https://app.example/cb").is_ok());
        assert!(validate_registered("http://localhost:6274/oauth/callback").is_ok());
        assert!(validate_registered("http://127.0.0.1/callback").is_ok());
        assert!(validate_registered("http://[::1]:8080/cb").is_ok());
        assert!(validate_registered("com.example.app:/oauth").is_ok());
        assert_eq!(
            validate_registered("http://evil.example/cb"),
            Err(RedirectUriError::InsecureHttp(
                "http://evil.example/cb".into()
            ))
        );
        assert!(validate_registered("https://app.example/cb#frag").is_err());
        assert!(validate_registered("javascript:alert(1)").is_err());
        for dotless in ["mailto:a@example.com", "tel:+15555550100", "myapp:/cb"] {
            assert_eq!(
                validate_registered(dotless),
                Err(RedirectUriError::NotReverseDomainScheme(dotless.into()))
            );
        }
        assert!(validate_registered("/relative").is_err());
        assert!(validate_registered("https://user:pw@app.example/cb").is_err());
        let long = format!("https://app.example/{}", "a".repeat(MAX_REDIRECT_URI_BYTES));
        assert_eq!(validate_registered(&long), Err(RedirectUriError::TooLong));
    }

    #[test]
    fn registered_uris_are_classified() {
        assert_eq!(
            validate_registered("https://app.example/cb"),
            Ok(RedirectKind::Https)
        );
        assert_eq!(
            validate_registered("http://localhost/callback"),
            Ok(RedirectKind::Loopback)
        );
        assert_eq!(
            validate_registered("com.example.app:/oauth"),
            Ok(RedirectKind::PrivateUse)
        );
        assert!(!RedirectKind::PrivateUse.is_http_url());
        assert!(RedirectKind::Loopback.is_http_url() && RedirectKind::Https.is_http_url());
    }

    #[test]
    fn loopback_hosts() {
        let loopback = |h: &str| {
            let url = url::Url::parse(&format!("http://{h}/")).unwrap();
            is_loopback_host(url.host().unwrap())
        };
        for h in ["localhost", "LocalHost", "127.0.0.1", "127.9.9.9", "[::1]"] {
            assert!(loopback(h), "{h}");
        }
        for h in [
            "example.com",
            "localhost.example",
            "10.0.0.1",
            "[::2]",
            "0.0.0.0",
        ] {
            assert!(!loopback(h), "{h}");
        }
    }

    #[test]
    fn exact_match_and_loopback_port_rule() {
        assert!(matches("https://app.example/cb", "https://app.example/cb"));
        assert!(!matches(
            "https://app.example/cb",
            "https://app.example/cb/"
        ));
        assert!(!matches(
            "https://app.example:443/cb",
            "https://app.example:8443/cb"
        ));
        assert!(matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53123/callback"
        ));
        assert!(matches(
            "http://localhost:3000/callback",
            "http://localhost:4000/callback"
        ));
        assert!(matches("http://[::1]/cb", "http://[::1]:9999/cb"));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53123/other"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://localhost:53123/callback"
        ));
        assert!(!matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1.evil.example/callback"
        ));
    }

    #[test]
    fn loopback_rule_varies_only_the_port() {
        let reg = "http://127.0.0.1/callback";
        // Dot segments, encodings, case, query or userinfo differences are not "the
        // same URI on another port".
        for bad in [
            "http://127.0.0.1:5555/x/../callback",
            "http://127.0.0.1:5555/./callback",
            "http://127.0.0.1:5555/%63allback",
            "http://127.0.0.1:5555/callback?x=1",
            "http://127.0.0.1:5555/callback/",
            "http://user@127.0.0.1:5555/callback",
            "http://127.0.0.1:5555/callback#f",
            "http://127.000.000.001:5555/callback",
        ] {
            assert!(!matches(reg, bad), "{bad} must not match {reg}");
        }
        assert!(!matches("http://localhost/cb", "http://LOCALHOST:5555/cb"));
        // https and non-loopback hosts never get the port rule.
        assert!(!matches(
            "https://localhost/cb",
            "https://localhost:5555/cb"
        ));
        assert!(!matches(
            "http://example.com/cb",
            "http://example.com:5555/cb"
        ));
        // Port-less registration without a path.
        assert!(matches("http://localhost", "http://localhost:5555"));
        assert!(matches("http://localhost/", "http://localhost:5555/"));
        assert!(matches(
            "http://127.0.0.1:8080/cb?client=1",
            "http://127.0.0.1:9090/cb?client=1"
        ));
    }

    #[test]
    fn resolve_defaults_only_with_one_uri() {
        let one = vec!["https://a/cb".to_string()];
        let two = vec!["https://a/cb".to_string(), "https://b/cb".to_string()];
        assert_eq!(resolve(&one, None), Some("https://a/cb"));
        assert_eq!(resolve(&two, None), None);
        assert_eq!(resolve(&two, Some("https://b/cb")), Some("https://b/cb"));
        assert_eq!(resolve(&two, Some("https://c/cb")), None);
    }
}
