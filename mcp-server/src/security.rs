//! DNS-rebinding protection for the MCP endpoint: `Host` and `Origin` allow-lists.
//! Pure functions; the bridge calls them before any token is looked at.

/// Loopback host names accepted by default, whatever the resource URL.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// `host` of the resource URL plus loopback names (any port).
pub fn default_allowed_hosts(resource: &str) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    if let Some(host) = url::Url::parse(resource).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    }) {
        hosts.push(host);
    }
    for h in LOOPBACK_HOSTS {
        if !hosts.iter().any(|x| x == h) {
            hosts.push((*h).to_string());
        }
    }
    hosts
}

/// The origin of the resource URL plus loopback origins on any port (local tools such
/// as the MCP Inspector run in a browser on `http://localhost:6274`).
pub fn default_allowed_origins(resource: &str) -> Vec<String> {
    let mut origins: Vec<String> = Vec::new();
    if let Ok(u) = url::Url::parse(resource) {
        let origin = u.origin().ascii_serialization();
        if origin != "null" {
            origins.push(origin);
        }
    }
    for o in ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"] {
        origins.push(o.to_string());
    }
    origins
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

fn normalize_host(host: &str) -> String {
    host.trim_matches(['[', ']']).to_ascii_lowercase()
}

fn parse_authority(raw: &str) -> Option<Authority> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let authority = http::uri::Authority::try_from(raw).ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    Some(Authority {
        host: normalize_host(authority.host()),
        port: authority.port_u16(),
    })
}

/// An allow-list entry: `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
fn parse_allowed_host(raw: &str) -> Option<Authority> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    parse_authority(raw).or_else(|| {
        Some(Authority {
            host: normalize_host(raw),
            port: None,
        })
    })
}

/// Splits a `Host` header value into host (brackets removed) and port without
/// allocating; `None` for anything that is not `host`, `host:port`, `[v6]` or
/// `[v6]:port` (userinfo, paths, spaces, empty parts).
fn split_host_header(raw: &str) -> Option<(&str, Option<u16>)> {
    let raw = raw.trim();
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (v6, after)
    } else {
        let end = raw.find(':').unwrap_or(raw.len());
        let (host, after) = raw.split_at(end);
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if host.is_empty() || !host.bytes().all(valid) {
            return None;
        }
        (host, after)
    };
    let port = match port {
        "" => None,
        p => {
            let digits = p.strip_prefix(':')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    Some((host, port))
}

/// Whether a configured `allowed_hosts` entry is usable: `host`, `host:port`,
/// `[v6]:port` or a bare IPv6 address (not a URL: `https://x` would never match).
pub fn is_valid_host_entry(raw: &str) -> bool {
    let raw = raw.trim();
    raw.parse::<std::net::Ipv6Addr>().is_ok() || split_host_header(raw).is_some()
}

/// The `Host` allow-list, parsed once at startup: checking a request allocates
/// nothing (it runs on every MCP request).
#[derive(Debug, Clone, Default)]
pub struct HostAllowList {
    entries: Vec<Authority>,
}

impl HostAllowList {
    pub fn new(allowed: &[String]) -> Self {
        HostAllowList {
            entries: allowed
                .iter()
                .filter_map(|a| parse_allowed_host(a))
                .collect(),
        }
    }

    /// Whether a `Host` header value is allowed. Entries without a port accept any
    /// port; `host:port` entries only that port.
    pub fn allows(&self, host_header: &str) -> bool {
        let Some((host, port)) = split_host_header(host_header) else {
            return false;
        };
        self.entries.iter().any(|a| {
            a.host.eq_ignore_ascii_case(host)
                && match a.port {
                    Some(p) => port == Some(p),
                    None => true,
                }
        })
    }
}

/// Whether a `Host` header value is on the allow-list (parses the list each time;
/// the server uses a [`HostAllowList`] built once).
pub fn host_allowed(host_header: &str, allowed: &[String]) -> bool {
    HostAllowList::new(allowed).allows(host_header)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Null,
    Tuple {
        scheme: String,
        host: String,
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Exact(u16),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse_origin(raw: &str) -> Option<Origin> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("null") {
        return Some(Origin::Null);
    }
    let uri = http::Uri::try_from(raw).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    // An origin has no path (a lone "/" is tolerated).
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return None;
    }
    let port = authority.port_u16().or_else(|| default_port(&scheme))?;
    Some(Origin::Tuple {
        scheme,
        host: normalize_host(authority.host()),
        port,
    })
}

fn parse_origin_pattern(raw: &str) -> Option<(Origin, PortPattern)> {
    let raw = raw.trim();
    if let Some(base) = raw.strip_suffix(":*") {
        return match parse_origin(base)? {
            Origin::Tuple { scheme, host, .. } => Some((
                Origin::Tuple {
                    scheme,
                    host,
                    port: 0,
                },
                PortPattern::Any,
            )),
            Origin::Null => None,
        };
    }
    let origin = parse_origin(raw)?;
    let port = match &origin {
        Origin::Tuple { port, .. } => PortPattern::Exact(*port),
        Origin::Null => PortPattern::Exact(0),
    };
    Some((origin, port))
}

/// Whether a configured entry is a usable origin pattern.
pub fn is_valid_origin_pattern(raw: &str) -> bool {
    parse_origin_pattern(raw).is_some()
}

/// The `Origin` allow-list, parsed once at startup.
#[derive(Debug, Clone, Default)]
pub struct OriginAllowList {
    patterns: Vec<(Origin, PortPattern)>,
}

impl OriginAllowList {
    pub fn new(allowed: &[String]) -> Self {
        OriginAllowList {
            patterns: allowed
                .iter()
                .filter_map(|a| parse_origin_pattern(a))
                .collect(),
        }
    }

    /// Whether an `Origin` header value matches (RFC 6454 tuple comparison, default
    /// ports made explicit, `:*` for any port).
    pub fn allows(&self, origin_header: &str) -> bool {
        match parse_origin(origin_header) {
            Some(origin) => origin_matches(&origin, &self.patterns),
            None => false,
        }
    }
}

/// Whether an `Origin` header value matches the allow-list (parses the list each
/// time; the server uses an [`OriginAllowList`] built once).
pub fn origin_allowed(origin_header: &str, allowed: &[String]) -> bool {
    OriginAllowList::new(allowed).allows(origin_header)
}

fn origin_matches(origin: &Origin, patterns: &[(Origin, PortPattern)]) -> bool {
    patterns
        .iter()
        .any(|(pattern, port)| match (pattern, origin) {
            (Origin::Null, Origin::Null) => true,
            (
                Origin::Tuple {
                    scheme: ps,
                    host: ph,
                    port: pp,
                },
                Origin::Tuple {
                    scheme: os,
                    host: oh,
                    port: op,
                },
            ) => {
                ps == os
                    && ph == oh
                    && match port {
                        PortPattern::Any => true,
                        PortPattern::Exact(_) => pp == op,
                    }
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hosts_match_with_and_without_port() {
        let allowed = list(&["localhost", "mcp.example.com:8443", "::1"]);
        assert!(host_allowed("localhost:3000", &allowed));
        assert!(host_allowed("LOCALHOST", &allowed));
        assert!(host_allowed("mcp.example.com:8443", &allowed));
        assert!(!host_allowed("mcp.example.com", &allowed));
        assert!(host_allowed("[::1]:3000", &allowed));
        assert!(!host_allowed("evil.example.com", &allowed));
        assert!(!host_allowed("localhost.evil.example.com", &allowed));
        assert!(!host_allowed("user@localhost", &allowed));
        assert!(!host_allowed("", &allowed));
    }

    #[test]
    fn host_header_parsing_refuses_odd_shapes() {
        let list = HostAllowList::new(&list(&["localhost", "127.0.0.1:3000", "::1"]));
        for ok in [
            "localhost",
            "LocalHost:80",
            " localhost:65535 ",
            "127.0.0.1:3000",
            "[::1]",
            "[::1]:1",
        ] {
            assert!(list.allows(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:3001",
            "localhost:",
            "localhost:x",
            "localhost:65536",
            "localhost:80:80",
            "::1",
            "[::1",
            "[::1]x",
            "[]",
            "local host",
            "localhost/x",
            "user@localhost",
            "localhost#",
            ":80",
            "evil.example.com",
        ] {
            assert!(!list.allows(bad), "{bad}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let allowed = list(&["https://app.example.com", "http://localhost:*", "null"]);
        assert!(origin_allowed("https://app.example.com", &allowed));
        assert!(origin_allowed("https://app.example.com:443", &allowed));
        assert!(!origin_allowed("https://app.example.com:8443", &allowed));
        assert!(!origin_allowed("http://app.example.com", &allowed));
        assert!(origin_allowed("http://localhost:6274", &allowed));
        assert!(origin_allowed("http://localhost", &allowed));
        assert!(!origin_allowed("https://localhost:6274", &allowed));
        assert!(origin_allowed("null", &allowed));
        assert!(!origin_allowed("http://evil.example.com", &allowed));
        assert!(!origin_allowed("evil.example.com", &allowed));
        assert!(!origin_allowed("https://app.example.com/path", &allowed));
    }

    #[test]
    fn defaults_cover_resource_and_loopback() {
        let hosts = default_allowed_hosts("https://MCP.example.com/mcp");
        assert_eq!(
            hosts,
            list(&["mcp.example.com", "localhost", "127.0.0.1", "::1"])
        );
        let origins = default_allowed_origins("http://127.0.0.1:3000/mcp");
        assert!(origin_allowed("http://127.0.0.1:3000", &origins));
        assert!(origin_allowed("http://localhost:6274", &origins));
        assert!(!origin_allowed("http://evil.example.com", &origins));
        assert!(is_valid_origin_pattern("http://[::1]:*"));
        assert!(!is_valid_origin_pattern("null:*"));
        assert!(!is_valid_origin_pattern("example.com"));
    }
}
