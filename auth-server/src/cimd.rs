//! OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document), as
//! MCP 2025-11-25 uses them: a client whose `client_id` is an https URL publishes its
//! metadata as a JSON document at that URL, and the authorization server fetches it.
//!
//! Fetching a URL chosen by an unauthenticated party is a server-side request forgery
//! risk, so every fetch is guarded:
//! - https only (http only on a loopback host, and only with `allow_insecure_cimd_for_tests`);
//! - the host is resolved by us and every address must be public (no loopback, RFC 1918,
//!   link-local, CGNAT, ULA, multicast, documentation ... ranges, including IPv4-mapped and
//!   other IPv4-embedding IPv6 forms); the connection goes to exactly the vetted addresses
//!   because the HTTP client's resolver is the vetting resolver itself, so DNS rebinding
//!   between check and connect is impossible; proxies from the environment are ignored;
//! - no redirects (a 3xx is an error), a timeout on the whole fetch, a byte cap enforced while
//!   streaming the body;
//! - the document is validated ([`validate_document`]) before anything else sees it.
//!
//! Results are cached per `Cache-Control` in a bounded LRU, and concurrent resolutions of
//! the same URL share one fetch.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use url::{Host, Url};

/// Settings of the CIMD resolver (`[cimd]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CimdSettings {
    /// Accept URL client ids at all.
    pub enabled: bool,
    /// Tests only: allow http on loopback hosts and fetching from loopback and private
    /// addresses. Never enable in production: it opens the server to SSRF.
    pub allow_insecure_cimd_for_tests: bool,
    /// Timeout of one whole fetch (connect, headers and body).
    pub timeout_ms: u64,
    /// Largest accepted document.
    pub max_document_bytes: usize,
    /// Number of documents kept in the cache (0 disables caching).
    pub max_cache_entries: usize,
    /// Cache lifetime when the response carries no `Cache-Control: max-age`.
    pub default_cache_secs: u64,
    /// Upper bound for any cache lifetime.
    pub max_cache_secs: u64,
}

impl Default for CimdSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_insecure_cimd_for_tests: false,
            timeout_ms: 5000,
            max_document_bytes: 65536,
            max_cache_entries: 1000,
            default_cache_secs: 300,
            max_cache_secs: 86400,
        }
    }
}

/// The validated metadata of a CIMD client. Always a public client
/// (`token_endpoint_auth_method == "none"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadataDocument {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
}

/// Why a client id URL could not be resolved. `Display` is safe to show to a user: it never
/// contains resolved addresses or internal error details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CimdError {
    #[error("client metadata documents are not enabled on this server")]
    Disabled,
    #[error("client_id is not a valid client metadata document URL (https, with a path, no fragment, no credentials)")]
    InvalidClientId,
    #[error("the client metadata host {0} does not resolve to a public address")]
    ForbiddenAddress(String),
    #[error("the client metadata host {0} could not be resolved")]
    Dns(String),
    #[error("fetching the client metadata document timed out")]
    Timeout,
    #[error("the client metadata document could not be fetched: {0}")]
    Fetch(String),
    #[error(
        "the client metadata document URL answered with a redirect; redirects are not followed"
    )]
    Redirect,
    #[error("the client metadata document URL answered with HTTP status {0}")]
    HttpStatus(u16),
    #[error("the client metadata document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the client metadata document is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid client metadata document: {0}")]
    InvalidDocument(String),
    #[error("client metadata resolver configuration: {0}")]
    Config(String),
}

// ---------------------------------------------------------------------------------------------
// Client id URLs
// ---------------------------------------------------------------------------------------------

/// Whether `s` is a client id that must be resolved as a metadata document: an https URL in
/// canonical form with a non-root path, no fragment and no user info. Use
/// [`CimdResolver::is_cimd_client_id`] (or [`is_cimd_client_id_with`]) to honour the test
/// switch that also accepts http on loopback hosts.
pub fn is_cimd_client_id(s: &str) -> bool {
    is_cimd_client_id_with(s, false)
}

/// [`is_cimd_client_id`], and with `allow_insecure` also `http://` URLs whose host is
/// `localhost` or a loopback address.
pub fn is_cimd_client_id_with(s: &str, allow_insecure: bool) -> bool {
    parse_client_id(s, allow_insecure).is_some()
}

fn parse_client_id(s: &str, allow_insecure: bool) -> Option<Url> {
    if !(s.starts_with("https://") || s.starts_with("http://")) || s.len() > 2048 {
        return None;
    }
    let url = Url::parse(s).ok()?;
    // Canonical form only: the document must repeat the id byte for byte anyway, and this
    // rules out dot segments, default ports, upper-case hosts and odd encodings.
    if url.as_str() != s {
        return None;
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure && url.host().is_some_and(|h| is_loopback_host(&h)) => {}
        _ => return None,
    }
    if url.host().is_none()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() == "/"
        || url.path().is_empty()
    {
        return None;
    }
    Some(url)
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

// ---------------------------------------------------------------------------------------------
// Address classification
// ---------------------------------------------------------------------------------------------

/// What kind of destination an IP address is, for the SSRF guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Globally routable unicast: always allowed.
    Public,
    /// Loopback (127/8, ::1): allowed only with the test switch.
    Loopback,
    /// Private or local networks (RFC 1918, link-local, CGNAT 100.64/10, ULA fc00::/7,
    /// site-local, NAT64 local-use): allowed only with the test switch.
    Internal,
    /// Never a valid destination: unspecified, multicast, broadcast, documentation,
    /// benchmarking, reserved and protocol-assignment ranges.
    Forbidden,
}

/// Classifies an address; IPv6 forms that embed an IPv4 address (mapped, compatible,
/// NAT64 64:ff9b::/96, 6to4) are classified by the embedded address.
pub fn classify_ip(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Forbidden, // "this network", unspecified
        (127, _, _) => AddressClass::Loopback, // 127/8
        (10, _, _) => AddressClass::Internal, // RFC 1918
        (172, 16..=31, _) => AddressClass::Internal,
        (192, 168, _) => AddressClass::Internal,
        (100, 64..=127, _) => AddressClass::Internal, // CGNAT 100.64/10
        (169, 254, _) => AddressClass::Internal,      // link-local (cloud metadata!)
        (192, 0, 0) => AddressClass::Forbidden,       // IETF protocol assignments
        (192, 0, 2) => AddressClass::Forbidden,       // TEST-NET-1
        (198, 51, 100) => AddressClass::Forbidden,    // TEST-NET-2
        (203, 0, 113) => AddressClass::Forbidden,     // TEST-NET-3
        (192, 88, 99) => AddressClass::Forbidden,     // 6to4 relay anycast (deprecated)
        (198, 18..=19, _) => AddressClass::Forbidden, // benchmarking 198.18/15
        (224..=255, _, _) => AddressClass::Forbidden, // multicast, reserved, broadcast
        _ => AddressClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return AddressClass::Forbidden;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible).
    if seg[0..5] == [0, 0, 0, 0, 0] && (seg[5] == 0xffff || seg[5] == 0) {
        return classify_v4(embedded_v4(seg[6], seg[7]));
    }
    // 64:ff9b::/96 NAT64 well-known prefix: the gateway connects to the embedded address.
    if seg[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded_v4(seg[6], seg[7]));
    }
    // 64:ff9b:1::/48 local-use NAT64.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return AddressClass::Internal;
    }
    // 2002::/16 6to4: the embedded IPv4 address is segments 1 and 2.
    if seg[0] == 0x2002 {
        return match classify_v4(embedded_v4(seg[1], seg[2])) {
            AddressClass::Public => AddressClass::Public,
            _ => AddressClass::Forbidden,
        };
    }
    match seg[0] {
        0xfc00..=0xfdff => return AddressClass::Internal, // ULA fc00::/7
        0xfe80..=0xfebf => return AddressClass::Internal, // link-local fe80::/10
        0xfec0..=0xfeff => return AddressClass::Internal, // site-local (deprecated)
        0xff00..=0xffff => return AddressClass::Forbidden, // multicast
        _ => {}
    }
    // 2001:db8::/32 and 3fff::/20 documentation; 2001::/23 IETF protocol assignments
    // (Teredo, ORCHID, ...); 100::/64 discard.
    if (seg[0] == 0x2001 && seg[1] == 0x0db8)
        || (seg[0] == 0x3fff && seg[1] < 0x1000)
        || (seg[0] == 0x2001 && seg[1] < 0x0200)
        || (seg[0] == 0x0100 && seg[1..4] == [0, 0, 0])
    {
        return AddressClass::Forbidden;
    }
    // Only 2000::/3 is allocated global unicast; everything else is reserved.
    if seg[0] & 0xe000 == 0x2000 {
        AddressClass::Public
    } else {
        AddressClass::Forbidden
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Whether the SSRF guard lets a fetch reach `ip`.
pub fn ip_allowed(ip: IpAddr, allow_insecure: bool) -> bool {
    match classify_ip(ip) {
        AddressClass::Public => true,
        AddressClass::Loopback | AddressClass::Internal => allow_insecure,
        AddressClass::Forbidden => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Cache-Control
// ---------------------------------------------------------------------------------------------

/// How long a response may be cached, from its `Cache-Control` header values. `None` means
/// "do not cache" (`no-store`, `no-cache`, `max-age=0`); no `max-age` gives `default_secs`;
/// any lifetime is clamped to `max_secs`.
pub fn cache_lifetime<'a>(
    cache_control: impl IntoIterator<Item = &'a str>,
    default_secs: u64,
    max_secs: u64,
) -> Option<Duration> {
    let mut max_age: Option<u64> = None;
    for header in cache_control {
        for directive in header.split(',') {
            let directive = directive.trim();
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return None;
            }
            if name.eq_ignore_ascii_case("max-age") {
                // An unparsable max-age is treated as stale (RFC 9111 §4.2.1); a huge one
                // saturates and is clamped below. The first valid occurrence wins.
                let parsed = value.and_then(|v| {
                    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                        Some(v.parse::<u64>().unwrap_or(u64::MAX))
                    } else {
                        None
                    }
                });
                if max_age.is_none() {
                    max_age = Some(parsed.unwrap_or(0));
                }
            }
        }
    }
    let secs = max_age.unwrap_or(default_secs).min(max_secs);
    (secs > 0).then(|| Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------
// Document validation
// ---------------------------------------------------------------------------------------------

const MAX_REDIRECT_URIS: usize = 32;
const MAX_CLIENT_NAME_CHARS: usize = 200;
const MAX_URI_BYTES: usize = 2048;

/// The document as published; every field optional so that a missing one gets a clear message.
#[derive(Deserialize)]
struct RawDocument {
    client_id: Option<serde_json::Value>,
    client_name: Option<serde_json::Value>,
    redirect_uris: Option<serde_json::Value>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    client_uri: Option<String>,
    logo_uri: Option<String>,
}

fn invalid(msg: impl Into<String>) -> CimdError {
    CimdError::InvalidDocument(msg.into())
}

/// Whether `uri` is an acceptable redirect URI for a CIMD client: absolute, no fragment, and
/// https, or http on a loopback host (`localhost`, 127.0.0.0/8, `[::1]`; any port, RFC 8252).
pub fn redirect_uri_acceptable(uri: &str) -> bool {
    if uri.len() > MAX_URI_BYTES {
        return false;
    }
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(h)) => is_loopback_host(&h),
        _ => false,
    }
}

fn optional_web_uri(uri: Option<String>) -> Option<String> {
    uri.filter(|u| {
        u.len() <= MAX_URI_BYTES
            && Url::parse(u).is_ok_and(|p| p.scheme() == "https" && p.host().is_some())
    })
}

/// Validates a fetched document against the URL it was fetched from. Pure; the rules:
/// - a JSON object without `client_secret` / `client_secret_expires_at`;
/// - `client_id` equal to `client_id_url` byte for byte;
/// - `client_name` a non-empty string (≤ 200 characters, no control characters);
/// - `redirect_uris` a non-empty array (≤ 32) of acceptable redirect URIs;
/// - `token_endpoint_auth_method` absent or `none` (CIMD clients are public here);
/// - `grant_types` (default `authorization_code`) ⊆ {`authorization_code`, `refresh_token`}
///   and containing `authorization_code`; `response_types` (default `code`) = {`code`}.
///
/// `client_uri` and `logo_uri` are kept only when they are https URLs.
pub fn validate_document(
    client_id_url: &str,
    body: &[u8],
) -> Result<ClientMetadataDocument, CimdError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| CimdError::InvalidJson(e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("the document must be a JSON object"))?;
    if obj.contains_key("client_secret") || obj.contains_key("client_secret_expires_at") {
        return Err(invalid(
            "a client metadata document must not contain a client_secret",
        ));
    }
    let raw: RawDocument = serde_json::from_value(value.clone())
        .map_err(|e| invalid(format!("unexpected field type: {e}")))?;

    match raw.client_id {
        Some(serde_json::Value::String(id)) if id == client_id_url => {}
        Some(serde_json::Value::String(_)) => {
            return Err(invalid(
                "client_id in the document does not match the URL it was fetched from",
            ))
        }
        Some(_) => return Err(invalid("client_id must be a string")),
        None => return Err(invalid("client_id is missing")),
    }

    let client_name = match raw.client_name {
        Some(serde_json::Value::String(n)) => n.trim().to_owned(),
        Some(_) => return Err(invalid("client_name must be a string")),
        None => return Err(invalid("client_name is missing")),
    };
    if client_name.is_empty() {
        return Err(invalid("client_name is empty"));
    }
    if client_name.chars().count() > MAX_CLIENT_NAME_CHARS {
        return Err(invalid("client_name is too long"));
    }
    if client_name
        .chars()
        .any(|c| c.is_control() || crate::domain::registration_policy::is_bidi_control(c))
    {
        return Err(invalid("client_name contains control characters"));
    }

    let redirect_uris: Vec<String> = match raw.redirect_uris {
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(invalid("redirect_uris must be an array of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("redirect_uris must be an array of strings")),
        None => return Err(invalid("redirect_uris is missing")),
    };
    if redirect_uris.is_empty() {
        return Err(invalid("redirect_uris is empty"));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid("too many redirect_uris"));
    }
    if let Some(bad) = redirect_uris.iter().find(|u| !redirect_uri_acceptable(u)) {
        return Err(invalid(format!(
            "redirect URI {bad:?} is not allowed (absolute https, or http on a loopback host, without fragment)"
        )));
    }

    let auth_method = raw
        .token_endpoint_auth_method
        .unwrap_or_else(|| "none".to_owned());
    if auth_method != "none" {
        return Err(invalid(format!(
            "token_endpoint_auth_method {auth_method:?} is not supported for client metadata documents; use \"none\""
        )));
    }

    let grant_types = raw
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    if let Some(bad) = grant_types
        .iter()
        .find(|g| *g != "authorization_code" && *g != "refresh_token")
    {
        return Err(invalid(format!("grant type {bad:?} is not supported")));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(invalid("grant_types must include authorization_code"));
    }
    let response_types = raw
        .response_types
        .unwrap_or_else(|| vec!["code".to_owned()]);
    if response_types.is_empty() || response_types.iter().any(|r| r != "code") {
        return Err(invalid("response_types must be [\"code\"]"));
    }

    Ok(ClientMetadataDocument {
        client_id: client_id_url.to_owned(),
        client_name,
        redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: auth_method,
        scope: raw.scope,
        client_uri: optional_web_uri(raw.client_uri),
        logo_uri: optional_web_uri(raw.logo_uri),
    })
}

// ---------------------------------------------------------------------------------------------
// Vetting DNS resolver
// ---------------------------------------------------------------------------------------------

/// Raised inside the HTTP client's resolver; found again in the error's source chain.
#[derive(Debug)]
enum ResolveRefusal {
    Forbidden(String),
    Unresolvable(String),
}

impl std::fmt::Display for ResolveRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveRefusal::Forbidden(h) => write!(f, "{h} resolves to a non-public address"),
            ResolveRefusal::Unresolvable(h) => write!(f, "{h} could not be resolved"),
        }
    }
}

impl std::error::Error for ResolveRefusal {}

/// The HTTP client's only resolver: it resolves with the system resolver and refuses the
/// name if any address is not allowed. Because the client connects to exactly the addresses
/// returned here, a second DNS answer cannot swap in an internal address.
struct VettingResolver {
    allow_insecure: bool,
}

impl reqwest::dns::Resolve for VettingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow_insecure = self.allow_insecure;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(it) => it.collect(),
                Err(_) => Vec::new(),
            };
            if addrs.is_empty() {
                return Err(Box::new(ResolveRefusal::Unresolvable(host)) as _);
            }
            if addrs.iter().any(|a| !ip_allowed(a.ip(), allow_insecure)) {
                return Err(Box::new(ResolveRefusal::Forbidden(host)) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn find_refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a ResolveRefusal> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<ResolveRefusal>() {
            return Some(r);
        }
        current = e.source();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Resolver
// ---------------------------------------------------------------------------------------------

struct CacheEntry {
    doc: Arc<ClientMetadataDocument>,
    expires: Instant,
}

type Flight = Arc<OnceCell<Result<Arc<ClientMetadataDocument>, CimdError>>>;

/// Fetches, validates and caches client metadata documents. Cheap to share (`Arc` it or put
/// it in `web::Data`); all methods take `&self`.
pub struct CimdResolver {
    settings: CimdSettings,
    client: reqwest::Client,
    cache: Option<Mutex<lru::LruCache<String, CacheEntry>>>,
    inflight: Mutex<HashMap<String, Flight>>,
}

impl std::fmt::Debug for CimdResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimdResolver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CimdResolver {
    pub fn new(settings: &CimdSettings) -> Result<Self, CimdError> {
        if settings.timeout_ms == 0 {
            return Err(CimdError::Config("cimd.timeout_ms must be > 0".into()));
        }
        if settings.max_document_bytes == 0 {
            return Err(CimdError::Config(
                "cimd.max_document_bytes must be > 0".into(),
            ));
        }
        let timeout = Duration::from_millis(settings.timeout_ms);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!settings.allow_insecure_cimd_for_tests)
            .dns_resolver(VettingResolver {
                allow_insecure: settings.allow_insecure_cimd_for_tests,
            })
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("mcp-auth-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CimdError::Config(format!("HTTP client: {e}")))?;
        let cache = NonZeroUsize::new(settings.max_cache_entries)
            .map(|cap| Mutex::new(lru::LruCache::new(cap)));
        Ok(Self {
            settings: settings.clone(),
            client,
            cache,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &CimdSettings {
        &self.settings
    }

    /// Whether `s` is a URL client id under this resolver's settings (false when disabled).
    pub fn is_cimd_client_id(&self, s: &str) -> bool {
        self.settings.enabled
            && is_cimd_client_id_with(s, self.settings.allow_insecure_cimd_for_tests)
    }

    /// Forgets a cached document (e.g. after an admin action).
    pub fn invalidate(&self, client_id_url: &str) {
        if let Some(cache) = &self.cache {
            lock(cache).pop(client_id_url);
        }
    }

    /// Number of cached documents (expired ones included until evicted).
    pub fn cached_len(&self) -> usize {
        self.cache.as_ref().map(|c| lock(c).len()).unwrap_or(0)
    }

    /// The validated document for `client_id_url`, from the cache or fetched. Concurrent
    /// calls for the same URL share one fetch.
    pub async fn resolve(&self, client_id_url: &str) -> Result<ClientMetadataDocument, CimdError> {
        if !self.settings.enabled {
            return Err(CimdError::Disabled);
        }
        let url = parse_client_id(client_id_url, self.settings.allow_insecure_cimd_for_tests)
            .ok_or(CimdError::InvalidClientId)?;
        if let Some(doc) = self.cached(client_id_url) {
            return Ok((*doc).clone());
        }

        let flight = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(client_id_url) {
                Some(f) => Some(f.clone()),
                // Bounded: past this many distinct concurrent URLs, fetch without sharing.
                None if inflight.len() < self.settings.max_cache_entries.max(64) => {
                    let f: Flight = Arc::new(OnceCell::new());
                    inflight.insert(client_id_url.to_owned(), f.clone());
                    Some(f)
                }
                None => None,
            }
        };
        let Some(flight) = flight else {
            return self
                .fetch_and_cache(client_id_url, &url)
                .await
                .map(|d| (*d).clone());
        };
        let result = flight
            .get_or_init(|| self.fetch_and_cache(client_id_url, &url))
            .await
            .clone();
        {
            let mut inflight = lock(&self.inflight);
            if inflight
                .get(client_id_url)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                inflight.remove(client_id_url);
            }
        }
        result.map(|d| (*d).clone())
    }

    fn cached(&self, key: &str) -> Option<Arc<ClientMetadataDocument>> {
        let cache = self.cache.as_ref()?;
        let mut cache = lock(cache);
        match cache.get(key) {
            Some(entry) if entry.expires > Instant::now() => Some(entry.doc.clone()),
            Some(_) => {
                cache.pop(key);
                None
            }
            None => None,
        }
    }

    async fn fetch_and_cache(
        &self,
        client_id_url: &str,
        url: &Url,
    ) -> Result<Arc<ClientMetadataDocument>, CimdError> {
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let (doc, lifetime) = tokio::time::timeout(timeout, self.fetch(client_id_url, url))
            .await
            .map_err(|_| CimdError::Timeout)??;
        let doc = Arc::new(doc);
        if let (Some(cache), Some(lifetime)) = (&self.cache, lifetime) {
            lock(cache).put(
                client_id_url.to_owned(),
                CacheEntry {
                    doc: doc.clone(),
                    expires: Instant::now() + lifetime,
                },
            );
        }
        Ok(doc)
    }

    async fn fetch(
        &self,
        client_id_url: &str,
        url: &Url,
    ) -> Result<(ClientMetadataDocument, Option<Duration>), CimdError> {
        let allow_insecure = self.settings.allow_insecure_cimd_for_tests;
        let host_display = url.host_str().unwrap_or_default().to_owned();
        // IP literals never reach the resolver: vet them here.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if !ip_allowed(ip, allow_insecure) {
                return Err(CimdError::ForbiddenAddress(host_display));
            }
        }

        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.map_reqwest_error(&e, &host_display))?;

        let status = response.status();
        if status.is_redirection() {
            return Err(CimdError::Redirect);
        }
        if !status.is_success() {
            return Err(CimdError::HttpStatus(status.as_u16()));
        }
        let cap = self.settings.max_document_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(CimdError::TooLarge(cap));
        }
        let lifetime = cache_lifetime(
            response
                .headers()
                .get_all(reqwest::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            self.settings.default_cache_secs,
            self.settings.max_cache_secs,
        );
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.map_reqwest_error(&e, &host_display))?
        {
            if body.len() + chunk.len() > cap {
                return Err(CimdError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        let doc = validate_document(client_id_url, &body)?;
        Ok((doc, lifetime))
    }

    fn map_reqwest_error(&self, e: &reqwest::Error, host: &str) -> CimdError {
        if let Some(refusal) = find_refusal(e) {
            return match refusal {
                ResolveRefusal::Forbidden(_) => CimdError::ForbiddenAddress(host.to_owned()),
                ResolveRefusal::Unresolvable(_) => CimdError::Dns(host.to_owned()),
            };
        }
        if e.is_timeout() {
            CimdError::Timeout
        } else if e.is_connect() {
            CimdError::Fetch("could not connect".into())
        } else if e.is_redirect() {
            CimdError::Redirect
        } else if e.is_body() || e.is_decode() {
            CimdError::Fetch("the response body could not be read".into())
        } else {
            log::debug!("CIMD fetch of {host} failed: {e}");
            CimdError::Fetch("request failed".into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn ipv4_classification() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "223.255.255.254",
        ] {
            assert_eq!(classify_ip(v4(public)), AddressClass::Public, "{public}");
        }
        for lo in ["127.0.0.1", "127.255.255.254"] {
            assert_eq!(classify_ip(v4(lo)), AddressClass::Loopback, "{lo}");
        }
        for internal in [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
        ] {
            assert_eq!(
                classify_ip(v4(internal)),
                AddressClass::Internal,
                "{internal}"
            );
        }
        for forbidden in [
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            assert_eq!(
                classify_ip(v4(forbidden)),
                AddressClass::Forbidden,
                "{forbidden}"
            );
        }
    }

    #[test]
    fn ipv6_classification() {
        assert_eq!(
            classify_ip(v6("2606:4700:4700::1111")),
            AddressClass::Public
        );
        assert_eq!(
            classify_ip(v6("2a00:1450:4001:82a::200e")),
            AddressClass::Public
        );
        assert_eq!(classify_ip(v6("::1")), AddressClass::Loopback);
        assert_eq!(classify_ip(v6("::")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("fc00::1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("fd12:3456::1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("fe80::1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("ff02::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("2001:db8::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("3fff::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("2001::1")), AddressClass::Forbidden); // Teredo
        assert_eq!(classify_ip(v6("100::1")), AddressClass::Forbidden);
        assert_eq!(classify_ip(v6("4000::1")), AddressClass::Forbidden); // unallocated
                                                                         // IPv4 embedded in IPv6 is judged by the IPv4 address.
        assert_eq!(classify_ip(v6("::ffff:127.0.0.1")), AddressClass::Loopback);
        assert_eq!(classify_ip(v6("::ffff:10.1.2.3")), AddressClass::Internal);
        assert_eq!(
            classify_ip(v6("::ffff:169.254.169.254")),
            AddressClass::Internal
        );
        assert_eq!(classify_ip(v6("::ffff:8.8.8.8")), AddressClass::Public);
        assert_eq!(classify_ip(v6("::127.0.0.1")), AddressClass::Loopback);
        assert_eq!(classify_ip(v6("64:ff9b::10.0.0.1")), AddressClass::Internal);
        assert_eq!(classify_ip(v6("64:ff9b::8.8.8.8")), AddressClass::Public);
        assert_eq!(classify_ip(v6("2002:7f00:1::1")), AddressClass::Forbidden); // 6to4 of 127.0.0.1
        assert_eq!(classify_ip(v6("2002:0808:0808::1")), AddressClass::Public);
    }

    #[test]
    fn ip_allowed_honours_the_test_switch() {
        assert!(ip_allowed(v4("8.8.8.8"), false));
        assert!(!ip_allowed(v4("127.0.0.1"), false));
        assert!(!ip_allowed(v4("10.0.0.1"), false));
        assert!(ip_allowed(v4("127.0.0.1"), true));
        assert!(ip_allowed(v4("192.168.0.1"), true));
        assert!(!ip_allowed(v4("0.0.0.0"), true));
        assert!(!ip_allowed(v6("ff02::1"), true));
    }

    #[test]
    fn client_id_urls() {
        assert!(is_cimd_client_id("https://app.example.com/client.json"));
        assert!(is_cimd_client_id(
            "https://app.example.com:8443/oauth/client-metadata.json"
        ));
        assert!(is_cimd_client_id("https://app.example.com/c?v=1"));
        assert!(!is_cimd_client_id("https://app.example.com/"));
        assert!(!is_cimd_client_id("https://app.example.com"));
        assert!(!is_cimd_client_id("https://app.example.com/c#frag"));
        assert!(!is_cimd_client_id("https://user:pw@app.example.com/c"));
        assert!(!is_cimd_client_id("https://app.example.com/a/../c"));
        assert!(!is_cimd_client_id("https://APP.example.com/c"));
        assert!(!is_cimd_client_id("http://app.example.com/c"));
        assert!(!is_cimd_client_id("http://127.0.0.1:8080/c"));
        assert!(!is_cimd_client_id("my-client"));
        assert!(!is_cimd_client_id("9b2c9e0a-2d5c-4bd4-9a3f-1f3f3f3f3f3f"));
        assert!(!is_cimd_client_id("urn:example:client"));
        // With the test switch, http on loopback only.
        assert!(is_cimd_client_id_with("http://127.0.0.1:8080/c", true));
        assert!(is_cimd_client_id_with("http://localhost:8080/c", true));
        assert!(is_cimd_client_id_with("http://[::1]:8080/c", true));
        assert!(!is_cimd_client_id_with("http://app.example.com/c", true));
        assert!(!is_cimd_client_id_with("http://10.0.0.1/c", true));
    }

    #[test]
    fn cache_control_parsing() {
        let d = |h: &[&str]| cache_lifetime(h.iter().copied(), 300, 86400);
        assert_eq!(d(&[]), Some(Duration::from_secs(300)));
        assert_eq!(d(&["public"]), Some(Duration::from_secs(300)));
        assert_eq!(d(&["max-age=60"]), Some(Duration::from_secs(60)));
        assert_eq!(d(&["public, MAX-AGE=120"]), Some(Duration::from_secs(120)));
        assert_eq!(d(&["max-age=\"90\""]), Some(Duration::from_secs(90)));
        assert_eq!(d(&["max-age=999999999"]), Some(Duration::from_secs(86400)));
        assert_eq!(
            d(&["max-age=99999999999999999999999"]),
            Some(Duration::from_secs(86400))
        );
        assert_eq!(d(&["max-age=0"]), None);
        assert_eq!(d(&["max-age=abc"]), None);
        assert_eq!(d(&["max-age=-5"]), None);
        assert_eq!(d(&["no-store"]), None);
        assert_eq!(d(&["max-age=60, no-store"]), None);
        assert_eq!(d(&["no-cache"]), None);
        assert_eq!(d(&["public", "No-Store"]), None);
        assert_eq!(
            d(&["max-age=30", "max-age=600"]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(cache_lifetime([], 0, 86400), None);
        assert_eq!(cache_lifetime([], 500, 100), Some(Duration::from_secs(100)));
    }

    const ID: &str = "https://app.example.com/client.json";

    fn doc(extra: serde_json::Value) -> Vec<u8> {
        let mut base = serde_json::json!({
            "client_id": ID,
            "client_name": "Example App",
            "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.com/cb"],
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        serde_json::to_vec(&base).unwrap()
    }

    fn err_of(body: &[u8]) -> String {
        validate_document(ID, body).unwrap_err().to_string()
    }

    #[test]
    fn valid_document_gets_defaults() {
        let d = validate_document(ID, &doc(serde_json::json!({"client_uri": "https://app.example.com", "logo_uri": "javascript:alert(1)"}))).unwrap();
        assert_eq!(d.client_id, ID);
        assert_eq!(d.client_name, "Example App");
        assert_eq!(d.grant_types, vec!["authorization_code"]);
        assert_eq!(d.response_types, vec!["code"]);
        assert_eq!(d.token_endpoint_auth_method, "none");
        assert_eq!(d.client_uri.as_deref(), Some("https://app.example.com"));
        assert_eq!(d.logo_uri, None);
        let d = validate_document(ID, &doc(serde_json::json!({"grant_types": ["authorization_code", "refresh_token"], "scope": "mcp:read"}))).unwrap();
        assert_eq!(d.grant_types.len(), 2);
        assert_eq!(d.scope.as_deref(), Some("mcp:read"));
    }

    #[test]
    fn invalid_documents_are_rejected_with_clear_messages() {
        assert!(err_of(&doc(
            serde_json::json!({"client_id": "https://evil.example.com/client.json"})
        ))
        .contains("does not match"));
        // Trailing slash or case difference is a mismatch too.
        assert!(
            err_of(&doc(serde_json::json!({"client_id": format!("{ID}/")})))
                .contains("does not match")
        );
        assert!(
            err_of(&doc(serde_json::json!({"client_id": null}))).contains("client_id is missing")
        );
        assert!(err_of(&doc(serde_json::json!({"client_name": null})))
            .contains("client_name is missing"));
        assert!(
            err_of(&doc(serde_json::json!({"client_name": "  "}))).contains("client_name is empty")
        );
        assert!(err_of(&doc(serde_json::json!({"client_name": "a\u{7}b"}))).contains("control"));
        assert!(err_of(&doc(
            serde_json::json!({"client_name": "Trusted\u{202E}lixE"})
        ))
        .contains("control"));
        assert!(err_of(&doc(serde_json::json!({"redirect_uris": null})))
            .contains("redirect_uris is missing"));
        assert!(err_of(&doc(serde_json::json!({"redirect_uris": []})))
            .contains("redirect_uris is empty"));
        assert!(
            err_of(&doc(serde_json::json!({"redirect_uris": "https://a/cb"}))).contains("array")
        );
        assert!(err_of(&doc(
            serde_json::json!({"redirect_uris": ["http://app.example.com/cb"]})
        ))
        .contains("not allowed"));
        assert!(
            err_of(&doc(serde_json::json!({"redirect_uris": ["/relative"]})))
                .contains("not allowed")
        );
        assert!(err_of(&doc(
            serde_json::json!({"redirect_uris": ["https://a.example/cb#x"]})
        ))
        .contains("not allowed"));
        assert!(err_of(&doc(
            serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"})
        ))
        .contains("not supported"));
        assert!(err_of(&doc(
            serde_json::json!({"token_endpoint_auth_method": "client_secret_post"})
        ))
        .contains("not supported"));
        assert!(
            err_of(&doc(serde_json::json!({"client_secret": "s3cr3t"}))).contains("client_secret")
        );
        assert!(err_of(&doc(
            serde_json::json!({"grant_types": ["client_credentials"]})
        ))
        .contains("not supported"));
        assert!(
            err_of(&doc(serde_json::json!({"grant_types": ["refresh_token"]})))
                .contains("authorization_code")
        );
        assert!(
            err_of(&doc(serde_json::json!({"response_types": ["token"]})))
                .contains("response_types")
        );
        assert!(err_of(b"[1,2]").contains("JSON object"));
        assert!(err_of(b"<html>").contains("not valid JSON"));
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(redirect_uri_acceptable("https://app.example.com/cb"));
        assert!(redirect_uri_acceptable("http://localhost/callback"));
        assert!(redirect_uri_acceptable("http://127.0.0.1:33418/"));
        assert!(redirect_uri_acceptable("http://[::1]:8080/cb"));
        assert!(!redirect_uri_acceptable("http://example.com/cb"));
        assert!(!redirect_uri_acceptable("javascript:alert(1)"));
        assert!(!redirect_uri_acceptable("https://user@app.example.com/cb"));
    }

    // ----- tests over real HTTP on 127.0.0.1 -----

    #[derive(Clone)]
    struct Canned {
        status: &'static str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay: Duration,
    }

    fn ok_json(body: Vec<u8>) -> Canned {
        Canned {
            status: "200 OK",
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            delay: Duration::ZERO,
        }
    }

    /// A tiny HTTP/1.1 server: `routes(base_url)` maps a path to a canned answer.
    struct TestServer {
        base: String,
        hits: Arc<AtomicUsize>,
        handle: tokio::task::JoinHandle<()>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.handle.abort();
        }
    }

    async fn serve(routes: impl Fn(&str) -> HashMap<String, Canned>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let routes = Arc::new(routes(&base));
        let hits = Arc::new(AtomicUsize::new(0));
        let hits2 = hits.clone();
        let handle = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                let hits = hits2.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut tmp = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let text = String::from_utf8_lossy(&buf);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let canned = routes.get(&path).cloned().unwrap_or(Canned {
                        status: "404 Not Found",
                        headers: vec![],
                        body: b"nope".to_vec(),
                        delay: Duration::ZERO,
                    });
                    tokio::time::sleep(canned.delay).await;
                    let mut head = format!(
                        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        canned.status,
                        canned.body.len()
                    );
                    for (k, v) in &canned.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&canned.body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestServer { base, hits, handle }
    }

    fn body_for(id: &str, extra: serde_json::Value) -> Vec<u8> {
        let mut v = serde_json::json!({
            "client_id": id,
            "client_name": "Test Client",
            "redirect_uris": ["http://127.0.0.1:9999/callback"],
        });
        for (k, val) in extra.as_object().unwrap() {
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val.clone();
            }
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn insecure(timeout_ms: u64) -> CimdResolver {
        CimdResolver::new(&CimdSettings {
            allow_insecure_cimd_for_tests: true,
            timeout_ms,
            ..CimdSettings::default()
        })
        .unwrap()
    }

    fn routes(base: &str) -> HashMap<String, Canned> {
        let mut m = HashMap::new();
        m.insert(
            "/valid.json".into(),
            ok_json(body_for(
                &format!("{base}/valid.json"),
                serde_json::json!({}),
            )),
        );
        m.insert(
            "/mismatch.json".into(),
            ok_json(body_for(
                "https://other.example.com/client.json",
                serde_json::json!({}),
            )),
        );
        m.insert(
            "/missing.json".into(),
            ok_json(body_for(
                &format!("{base}/missing.json"),
                serde_json::json!({"redirect_uris": null}),
            )),
        );
        m.insert(
            "/secret.json".into(),
            ok_json(body_for(
                &format!("{base}/secret.json"),
                serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"}),
            )),
        );
        let big = body_for(
            &format!("{base}/big.json"),
            serde_json::json!({"padding": "x".repeat(70_000)}),
        );
        m.insert("/big.json".into(), ok_json(big));
        m.insert(
            "/redirect.json".into(),
            Canned {
                status: "302 Found",
                headers: vec![("Location".into(), format!("{base}/valid.json"))],
                body: vec![],
                delay: Duration::ZERO,
            },
        );
        let mut slow = ok_json(body_for(
            &format!("{base}/slow.json"),
            serde_json::json!({}),
        ));
        slow.delay = Duration::from_secs(3);
        m.insert("/slow.json".into(), slow);
        m.insert(
            "/html.json".into(),
            Canned {
                status: "200 OK",
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: b"<html>hi</html>".to_vec(),
                delay: Duration::ZERO,
            },
        );
        let mut nostore = ok_json(body_for(
            &format!("{base}/nostore.json"),
            serde_json::json!({}),
        ));
        nostore
            .headers
            .push(("Cache-Control".into(), "no-store".into()));
        m.insert("/nostore.json".into(), nostore);
        let mut cached = ok_json(body_for(
            &format!("{base}/cached.json"),
            serde_json::json!({}),
        ));
        cached
            .headers
            .push(("Cache-Control".into(), "public, max-age=600".into()));
        m.insert("/cached.json".into(), cached);
        let mut concurrent = ok_json(body_for(
            &format!("{base}/concurrent.json"),
            serde_json::json!({}),
        ));
        concurrent.delay = Duration::from_millis(200);
        m.insert("/concurrent.json".into(), concurrent);
        m
    }

    #[tokio::test]
    async fn fetch_outcomes_with_the_test_switch() {
        let server = serve(routes).await;
        let r = insecure(5000);
        let b = &server.base;

        let d = r.resolve(&format!("{b}/valid.json")).await.unwrap();
        assert_eq!(d.client_id, format!("{b}/valid.json"));
        assert_eq!(d.client_name, "Test Client");
        assert_eq!(d.redirect_uris, vec!["http://127.0.0.1:9999/callback"]);

        let e = r.resolve(&format!("{b}/mismatch.json")).await.unwrap_err();
        assert!(
            matches!(e, CimdError::InvalidDocument(ref m) if m.contains("does not match")),
            "{e}"
        );
        let e = r.resolve(&format!("{b}/missing.json")).await.unwrap_err();
        assert!(e.to_string().contains("redirect_uris is missing"), "{e}");
        let e = r.resolve(&format!("{b}/secret.json")).await.unwrap_err();
        assert!(e.to_string().contains("token_endpoint_auth_method"), "{e}");
        let e = r.resolve(&format!("{b}/big.json")).await.unwrap_err();
        assert_eq!(e, CimdError::TooLarge(65536));
        let e = r.resolve(&format!("{b}/redirect.json")).await.unwrap_err();
        assert_eq!(e, CimdError::Redirect);
        let e = r.resolve(&format!("{b}/html.json")).await.unwrap_err();
        assert!(matches!(e, CimdError::InvalidJson(_)), "{e}");
        let e = r.resolve(&format!("{b}/absent.json")).await.unwrap_err();
        assert_eq!(e, CimdError::HttpStatus(404));
        // Not a CIMD URL at all.
        let e = r.resolve(&format!("{b}/")).await.unwrap_err();
        assert_eq!(e, CimdError::InvalidClientId);
    }

    #[tokio::test]
    async fn oversized_body_without_content_length_is_cut_while_streaming() {
        // A chunked response: no Content-Length, so the cap must be enforced on the stream.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut tmp = [0u8; 4096];
            let _ = sock.read(&mut tmp).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = vec![b' '; 8192];
            for _ in 0..64 {
                let head = format!("{:x}\r\n", chunk.len());
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(&chunk).await.is_err()
                    || sock.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
            let _ = sock.write_all(b"0\r\n\r\n").await;
        });
        let r = CimdResolver::new(&CimdSettings {
            allow_insecure_cimd_for_tests: true,
            max_document_bytes: 10_000,
            ..CimdSettings::default()
        })
        .unwrap();
        let e = r
            .resolve(&format!("http://127.0.0.1:{port}/stream.json"))
            .await
            .unwrap_err();
        assert_eq!(e, CimdError::TooLarge(10_000));
        handle.abort();
    }

    #[tokio::test]
    async fn slow_server_times_out() {
        let server = serve(routes).await;
        let r = insecure(300);
        let started = Instant::now();
        let e = r
            .resolve(&format!("{}/slow.json", server.base))
            .await
            .unwrap_err();
        assert_eq!(e, CimdError::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn loopback_is_refused_without_the_test_switch() {
        let server = serve(routes).await;
        let r = CimdResolver::new(&CimdSettings::default()).unwrap();
        let port = server.base.rsplit(':').next().unwrap();
        // http is not a CIMD URL at all without the switch.
        assert!(!r.is_cimd_client_id(&format!("{}/valid.json", server.base)));
        assert_eq!(
            r.resolve(&format!("{}/valid.json", server.base))
                .await
                .unwrap_err(),
            CimdError::InvalidClientId
        );
        // https to a loopback literal or to a name that resolves to loopback: refused
        // before any connection is made.
        for url in [
            format!("https://127.0.0.1:{port}/valid.json"),
            format!("https://[::1]:{port}/valid.json"),
            format!("https://[::ffff:7f00:1]:{port}/valid.json"),
            format!("https://localhost:{port}/valid.json"),
            "https://169.254.169.254/latest/meta-data".to_owned(),
            "https://10.0.0.1/client.json".to_owned(),
        ] {
            let e = r.resolve(&url).await.unwrap_err();
            assert!(matches!(e, CimdError::ForbiddenAddress(_)), "{url}: {e}");
        }
        assert_eq!(
            server.hits.load(Ordering::SeqCst),
            0,
            "no request may reach the server"
        );
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_pass_the_resolver_with_the_switch() {
        let server = serve(routes).await;
        let port = server.base.rsplit(':').next().unwrap();
        let base = format!("http://localhost:{port}");
        // The document's client_id must be the localhost URL, which the canned routes don't
        // have; a mismatch error proves the fetch went through the vetting resolver.
        let e = insecure(5000)
            .resolve(&format!("{base}/valid.json"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[tokio::test]
    async fn cache_honours_cache_control_and_shares_inflight_fetches() {
        let server = serve(routes).await;
        let r = insecure(5000);
        let b = &server.base;
        let before = server.hits.load(Ordering::SeqCst);
        r.resolve(&format!("{b}/cached.json")).await.unwrap();
        r.resolve(&format!("{b}/cached.json")).await.unwrap();
        assert_eq!(
            server.hits.load(Ordering::SeqCst) - before,
            1,
            "max-age=600 is cached"
        );
        assert_eq!(r.cached_len(), 1);
        r.invalidate(&format!("{b}/cached.json"));
        assert_eq!(r.cached_len(), 0);

        let before = server.hits.load(Ordering::SeqCst);
        r.resolve(&format!("{b}/nostore.json")).await.unwrap();
        r.resolve(&format!("{b}/nostore.json")).await.unwrap();
        assert_eq!(
            server.hits.load(Ordering::SeqCst) - before,
            2,
            "no-store is not cached"
        );

        let before = server.hits.load(Ordering::SeqCst);
        let url = format!("{b}/concurrent.json");
        let results = futures_util::future::join_all((0..8).map(|_| r.resolve(&url))).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(
            server.hits.load(Ordering::SeqCst) - before,
            1,
            "one fetch for 8 concurrent calls"
        );
        assert!(lock(&r.inflight).is_empty());
    }

    #[tokio::test]
    async fn disabled_resolver_refuses() {
        let r = CimdResolver::new(&CimdSettings {
            enabled: false,
            ..CimdSettings::default()
        })
        .unwrap();
        assert!(!r.is_cimd_client_id(ID));
        assert_eq!(r.resolve(ID).await.unwrap_err(), CimdError::Disabled);
    }

    #[test]
    fn settings_defaults_and_partial_toml() {
        let s: CimdSettings =
            serde_json::from_str(r#"{"allow_insecure_cimd_for_tests": true}"#).unwrap();
        assert!(s.enabled && s.allow_insecure_cimd_for_tests);
        assert_eq!(s.timeout_ms, 5000);
        assert_eq!(s.max_document_bytes, 65536);
        assert!(CimdResolver::new(&CimdSettings {
            timeout_ms: 0,
            ..CimdSettings::default()
        })
        .is_err());
    }
}
