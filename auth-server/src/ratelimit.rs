//! Keyed rate limits (GCRA) for login, registration and token requests, and the client-IP
//! rule used to key them.
//!
//! Each [`Bucket`] allows `N` requests per minute per key, with a burst of `N`: a fresh key
//! may send `N` requests at once, then one every `60/N` seconds. State is one `u64` per
//! key in sharded maps; keys whose state has fully recovered carry no information and are
//! dropped when a shard fills up, and the total is bounded by `max_tracked_keys`.
//!
//! The client IP comes from the TCP peer, or from `X-Forwarded-For` only when the peer is a
//! configured trusted proxy ([`client_ip`]).

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Settings of the rate limiter (`[rate_limit]` in the config file). A limit of 0 switches
/// that bucket off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Switch every limit off (benchmarks).
    pub enabled: bool,
    /// Login attempts (POSTs of the login form) per client IP.
    pub login_per_ip_per_minute: u32,
    /// Failed login attempts per username, whatever the IP (successful logins are
    /// not counted, so a test suite or a shared demo account is never locked out).
    pub login_per_user_per_minute: u32,
    /// Dynamic client registrations per client IP.
    pub register_per_ip_per_minute: u32,
    /// Token endpoint calls per client IP.
    pub token_per_ip_per_minute: u32,
    /// Token endpoint calls per client_id.
    pub token_per_client_per_minute: u32,
    /// Upper bound on keys remembered across all buckets.
    pub max_tracked_keys: usize,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_ip_per_minute: 60,
            login_per_user_per_minute: 20,
            register_per_ip_per_minute: 60,
            token_per_ip_per_minute: 300,
            token_per_client_per_minute: 300,
            max_tracked_keys: 100_000,
        }
    }
}

/// What is being limited, and by which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    LoginIp,
    LoginUser,
    RegisterIp,
    TokenIp,
    TokenClient,
}

impl Bucket {
    pub const ALL: [Bucket; 5] = [
        Bucket::LoginIp,
        Bucket::LoginUser,
        Bucket::RegisterIp,
        Bucket::TokenIp,
        Bucket::TokenClient,
    ];

    fn index(self) -> usize {
        match self {
            Bucket::LoginIp => 0,
            Bucket::LoginUser => 1,
            Bucket::RegisterIp => 2,
            Bucket::TokenIp => 3,
            Bucket::TokenClient => 4,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::LoginIp => "login_ip",
            Bucket::LoginUser => "login_user",
            Bucket::RegisterIp => "register_ip",
            Bucket::TokenIp => "token_ip",
            Bucket::TokenClient => "token_client",
        }
    }

    fn per_minute(self, s: &RateLimitSettings) -> u32 {
        match self {
            Bucket::LoginIp => s.login_per_ip_per_minute,
            Bucket::LoginUser => s.login_per_user_per_minute,
            Bucket::RegisterIp => s.register_per_ip_per_minute,
            Bucket::TokenIp => s.token_per_ip_per_minute,
            Bucket::TokenClient => s.token_per_client_per_minute,
        }
    }
}

/// A refusal: retry after this many whole seconds (≥ 1); send it as `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "too many requests; retry after {} s", self.0)
    }
}

const SHARDS: usize = 16;

/// GCRA parameters of one bucket, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Emission interval: time between requests at the steady rate.
    interval: u64,
    /// Burst tolerance: how far ahead of `now` the theoretical arrival time may run.
    tolerance: u64,
}

impl Rate {
    fn per_minute(n: u32) -> Option<Self> {
        if n == 0 {
            return None;
        }
        let interval = 60_000_000_000u64 / u64::from(n);
        Some(Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(n) - 1),
        })
    }
}

struct BucketState {
    rate: Option<Rate>,
    /// Theoretical arrival time per key, in nanoseconds since the limiter's epoch.
    shards: Vec<Mutex<HashMap<String, u64>>>,
}

/// Keyed GCRA limiter for the [`Bucket`]s. All methods take `&self`; share it in
/// `web::Data`.
pub struct RateLimiter {
    enabled: bool,
    buckets: Vec<BucketState>,
    per_shard_cap: usize,
    hasher: std::collections::hash_map::RandomState,
    epoch: Instant,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.enabled)
            .field("tracked_keys", &self.tracked_keys())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let buckets = Bucket::ALL
            .iter()
            .map(|b| BucketState {
                rate: Rate::per_minute(b.per_minute(settings)),
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            })
            .collect();
        let per_shard_cap = settings
            .max_tracked_keys
            .div_ceil(Bucket::ALL.len() * SHARDS)
            .max(1);
        Self {
            enabled: settings.enabled,
            buckets,
            per_shard_cap,
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Counts one request for `key` in `bucket`: `Ok` if it may proceed, else how long to
    /// wait. Always `Ok` when the limiter or the bucket is switched off.
    pub fn check(&self, bucket: Bucket, key: &str) -> Result<(), RetryAfter> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(bucket, key, now)
    }

    /// Whether `key` would be allowed in `bucket` right now, without counting a request:
    /// for limits that are charged only after the outcome is known (failed logins).
    pub fn peek(&self, bucket: Bucket, key: &str) -> Result<(), RetryAfter> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.peek_at(bucket, key, now)
    }

    fn peek_at(&self, bucket: Bucket, key: &str, now: u64) -> Result<(), RetryAfter> {
        if !self.enabled {
            return Ok(());
        }
        let Some(state) = self.buckets.get(bucket.index()) else {
            return Ok(());
        };
        let Some(rate) = state.rate else {
            return Ok(());
        };
        let shard_idx = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Some(shard) = state.shards.get(shard_idx) else {
            return Ok(());
        };
        let tat = lock(shard).get(key).copied().unwrap_or(now).max(now);
        refusal(tat, rate, now)
    }

    /// Number of keys currently remembered (all buckets).
    pub fn tracked_keys(&self) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.shards.iter())
            .map(|s| lock(s).len())
            .sum()
    }

    /// [`check`](Self::check) at an explicit time (nanoseconds since the limiter was
    /// created): the injectable clock for tests.
    fn check_at(&self, bucket: Bucket, key: &str, now: u64) -> Result<(), RetryAfter> {
        if !self.enabled {
            return Ok(());
        }
        let Some(state) = self.buckets.get(bucket.index()) else {
            return Ok(());
        };
        let Some(rate) = state.rate else {
            return Ok(());
        };
        let shard_idx = (self.hasher.hash_one(key) as usize) % SHARDS;
        let Some(shard) = state.shards.get(shard_idx) else {
            return Ok(());
        };
        let mut map = lock(shard);
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        refusal(tat, rate, now)?;
        let new_tat = tat.saturating_add(rate.interval);
        if let Some(slot) = map.get_mut(key) {
            *slot = new_tat;
        } else {
            if map.len() >= self.per_shard_cap {
                // Keys whose TAT has passed are back to a fresh state: forget them.
                map.retain(|_, t| *t > now);
                if map.len() >= self.per_shard_cap {
                    // Still full of active keys: drop the one closest to recovery.
                    if let Some(victim) =
                        map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
                    {
                        map.remove(&victim);
                    }
                }
            }
            map.insert(key.to_owned(), new_tat);
        }
        Ok(())
    }
}

/// GCRA: refuse when the theoretical arrival time runs more than the burst tolerance ahead.
fn refusal(tat: u64, rate: Rate, now: u64) -> Result<(), RetryAfter> {
    let allow_at = tat.saturating_sub(rate.tolerance);
    if now < allow_at {
        let wait = Duration::from_nanos(allow_at - now);
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(RetryAfter(secs.max(1)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Trusted proxies and the client IP
// ---------------------------------------------------------------------------------------------

/// A trusted proxy: one address or a CIDR network (`10.0.0.1`, `10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    network: IpAddr,
    prefix: u8,
}

/// A trusted-proxy entry that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trusted proxy {input:?}: {reason} (expected an IP address or CIDR network such as 10.0.0.1, 10.0.0.0/8 or ::1/128)")]
pub struct TrustedProxyError {
    pub input: String,
    pub reason: &'static str,
}

impl TrustedProxy {
    /// Parses every entry, failing on the first bad one.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<TrustedProxy>, TrustedProxyError> {
        items.iter().map(|s| s.as_ref().parse()).collect()
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix.min(128)))
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as seen on dual-stack sockets) becomes IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

impl FromStr for TrustedProxy {
    type Err = TrustedProxyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| TrustedProxyError {
            input: s.to_owned(),
            reason,
        };
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(err("empty entry"));
        }
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((a, p)) => {
                let p: u8 = p
                    .trim()
                    .parse()
                    .map_err(|_| err("the prefix length is not a number"))?;
                (a.trim(), Some(p))
            }
            None => (trimmed, None),
        };
        let ip: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| err("not an IP address"))?;
        let ip = canonical_ip(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err("the prefix length is too long for this address family"));
        }
        // Host bits are ignored: 10.1.2.3/8 means 10.0.0.0/8.
        let network = match ip {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix))),
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parses one `X-Forwarded-For` element: an IP, or `ip:port` / `[v6]:port` as some
/// proxies write them.
fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical_ip(sa.ip()));
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(canonical_ip)
}

fn is_trusted(ip: IpAddr, trusted: &[TrustedProxy]) -> bool {
    trusted.iter().any(|t| t.contains(ip))
}

/// The client address as seen from the peer address and the `X-Forwarded-For` values (all
/// header lines, in order). Pure; [`client_ip`] feeds it from a request.
pub fn client_ip_from(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[TrustedProxy],
) -> IpAddr {
    let Some(peer) = peer.map(canonical_ip) else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !is_trusted(peer, trusted) {
        return peer;
    }
    // Walk from the right (the hop closest to us), skipping trusted proxies; the first
    // untrusted address is the client. An unparsable element stops the walk: everything
    // left of it could be forged, so the last address we could vouch for is used.
    let mut client = peer;
    for element in forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')) {
        if element.trim().is_empty() {
            continue;
        }
        match parse_forwarded_ip(element) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip, trusted) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The rate-limit key of an address: IPv4 as is, IPv6 by its /64 network (one end site
/// usually owns a whole /64 and could otherwise rotate through addresses for free).
pub fn ip_key(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & mask128(64));
            format!("{net}/64")
        }
    }
}

/// The client address of a request: the TCP peer, or, when the peer is a trusted proxy,
/// the rightmost untrusted address of `X-Forwarded-For`. `0.0.0.0` when the peer is unknown.
pub fn client_ip(req: &actix_web::HttpRequest, trusted_proxies: &[TrustedProxy]) -> IpAddr {
    let peer = req.peer_addr().map(|a| a.ip());
    if trusted_proxies.is_empty() {
        return peer
            .map(canonical_ip)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_ip_from(peer, &values, trusted_proxies)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn limiter(f: impl FnOnce(&mut RateLimitSettings)) -> RateLimiter {
        let mut s = RateLimitSettings::default();
        f(&mut s);
        RateLimiter::new(&s)
    }

    #[test]
    fn trips_after_n_and_recovers_over_time() {
        let rl = limiter(|s| s.login_per_ip_per_minute = 6); // one every 10 s, burst 6
        let t0 = 100 * SEC;
        for i in 0..6 {
            assert_eq!(
                rl.check_at(Bucket::LoginIp, "1.2.3.4", t0),
                Ok(()),
                "request {i}"
            );
        }
        assert_eq!(
            rl.check_at(Bucket::LoginIp, "1.2.3.4", t0),
            Err(RetryAfter(10))
        );
        // 4.5 s later: still 5.5 s to wait, rounded up.
        assert_eq!(
            rl.check_at(Bucket::LoginIp, "1.2.3.4", t0 + 4 * SEC + SEC / 2),
            Err(RetryAfter(6))
        );
        // After one interval exactly one more request passes.
        assert_eq!(
            rl.check_at(Bucket::LoginIp, "1.2.3.4", t0 + 10 * SEC),
            Ok(())
        );
        assert!(rl
            .check_at(Bucket::LoginIp, "1.2.3.4", t0 + 10 * SEC)
            .is_err());
        // After a full minute of silence the whole burst is back.
        let t1 = t0 + 80 * SEC;
        for _ in 0..6 {
            assert_eq!(rl.check_at(Bucket::LoginIp, "1.2.3.4", t1), Ok(()));
        }
        assert!(rl.check_at(Bucket::LoginIp, "1.2.3.4", t1).is_err());
    }

    #[test]
    fn refusals_do_not_extend_the_wait() {
        let rl = limiter(|s| s.token_per_client_per_minute = 1);
        assert!(rl.check_at(Bucket::TokenClient, "c", 0).is_ok());
        for _ in 0..100 {
            assert!(rl.check_at(Bucket::TokenClient, "c", SEC).is_err());
        }
        assert!(rl.check_at(Bucket::TokenClient, "c", 60 * SEC).is_ok());
    }

    #[test]
    fn peek_does_not_charge() {
        let rl = limiter(|s| s.login_per_user_per_minute = 2);
        for _ in 0..100 {
            assert_eq!(rl.peek_at(Bucket::LoginUser, "alice", 0), Ok(()));
        }
        assert!(rl.check_at(Bucket::LoginUser, "alice", 0).is_ok());
        assert!(rl.check_at(Bucket::LoginUser, "alice", 0).is_ok());
        assert_eq!(
            rl.peek_at(Bucket::LoginUser, "alice", 0),
            Err(RetryAfter(30))
        );
        assert_eq!(rl.peek_at(Bucket::LoginUser, "bob", 0), Ok(()));
        assert_eq!(rl.peek_at(Bucket::LoginUser, "alice", 30 * SEC), Ok(()));
    }

    #[test]
    fn keys_and_buckets_are_isolated() {
        let rl = limiter(|s| {
            s.login_per_ip_per_minute = 2;
            s.login_per_user_per_minute = 2;
        });
        assert!(rl.check_at(Bucket::LoginIp, "a", 0).is_ok());
        assert!(rl.check_at(Bucket::LoginIp, "a", 0).is_ok());
        assert!(rl.check_at(Bucket::LoginIp, "a", 0).is_err());
        assert!(rl.check_at(Bucket::LoginIp, "b", 0).is_ok());
        // Same key string in another bucket has its own budget.
        assert!(rl.check_at(Bucket::LoginUser, "a", 0).is_ok());
        assert!(rl.check_at(Bucket::LoginUser, "a", 0).is_ok());
        assert!(rl.check_at(Bucket::LoginUser, "a", 0).is_err());
    }

    #[test]
    fn disabled_or_zero_limit_always_passes() {
        let rl = limiter(|s| {
            s.enabled = false;
            s.login_per_ip_per_minute = 1;
        });
        for _ in 0..1000 {
            assert!(rl.check(Bucket::LoginIp, "x").is_ok());
        }
        let rl = limiter(|s| s.register_per_ip_per_minute = 0);
        for _ in 0..1000 {
            assert!(rl.check(Bucket::RegisterIp, "x").is_ok());
        }
        assert_eq!(rl.tracked_keys(), 0);
    }

    #[test]
    fn defaults_let_a_test_suite_through_but_stop_brute_force() {
        let rl = RateLimiter::new(&RateLimitSettings::default());
        for _ in 0..40 {
            assert!(rl.check(Bucket::LoginIp, "127.0.0.1").is_ok());
            assert!(rl.check(Bucket::RegisterIp, "127.0.0.1").is_ok());
            assert!(rl.check(Bucket::TokenIp, "127.0.0.1").is_ok());
            assert!(rl.check(Bucket::TokenClient, "client").is_ok());
        }
        for _ in 0..20 {
            assert!(rl.check(Bucket::LoginUser, "demo").is_ok());
        }
        // A password-guessing loop from one address is stopped within the minute.
        let refused = (0..1000)
            .filter(|_| rl.check(Bucket::LoginIp, "10.9.9.9").is_err())
            .count();
        assert!(refused >= 900, "{refused}");
        let err = rl.check(Bucket::LoginIp, "10.9.9.9").unwrap_err();
        assert!(err.0 >= 1 && err.0 <= 60, "{err:?}");
    }

    #[test]
    fn real_clock_check_works() {
        let rl = limiter(|s| s.token_per_ip_per_minute = 3);
        assert!(rl.check(Bucket::TokenIp, "k").is_ok());
        assert!(rl.check(Bucket::TokenIp, "k").is_ok());
        assert!(rl.check(Bucket::TokenIp, "k").is_ok());
        let RetryAfter(secs) = rl.check(Bucket::TokenIp, "k").unwrap_err();
        assert!((1..=20).contains(&secs), "{secs}");
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_are_evicted() {
        let rl = limiter(|s| {
            s.max_tracked_keys = 160; // 2 per shard per bucket
            s.token_per_ip_per_minute = 60;
        });
        for i in 0..10_000 {
            assert!(rl.check_at(Bucket::TokenIp, &format!("k{i}"), 0).is_ok());
        }
        assert!(rl.tracked_keys() <= 5 * 16 * 2, "{}", rl.tracked_keys());
        // Later, idle keys are swept rather than active ones.
        for i in 0..100 {
            assert!(rl
                .check_at(Bucket::TokenIp, &format!("late{i}"), 120 * SEC)
                .is_ok());
        }
        assert!(rl.tracked_keys() <= 5 * 16 * 2);
    }

    #[test]
    fn cidr_parsing() {
        let p: TrustedProxy = "10.0.0.1".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.1/32");
        let p: TrustedProxy = "10.0.0.0/8".parse().unwrap();
        assert!(p.contains("10.255.1.2".parse().unwrap()));
        assert!(!p.contains("11.0.0.1".parse().unwrap()));
        assert!(p.contains("::ffff:10.1.1.1".parse().unwrap()));
        let p: TrustedProxy = "::1/128".parse().unwrap();
        assert!(p.contains("::1".parse().unwrap()));
        assert!(!p.contains("127.0.0.1".parse().unwrap()));
        let p: TrustedProxy = "fd00::/8".parse().unwrap();
        assert!(p.contains("fd12::1".parse().unwrap()));
        assert!(!p.contains("fe80::1".parse().unwrap()));
        let p: TrustedProxy = " 192.168.1.77/24 ".parse().unwrap();
        assert_eq!(p.to_string(), "192.168.1.0/24");
        let any: TrustedProxy = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::1/129",
            "example.com",
            "10.0.0.0/x",
            "10.0.0/8",
        ] {
            let e = bad.parse::<TrustedProxy>().unwrap_err();
            assert!(
                e.to_string().contains("invalid trusted proxy"),
                "{bad}: {e}"
            );
        }
        assert!(TrustedProxy::parse_list(&["10.0.0.1", "nope"]).is_err());
        assert_eq!(
            TrustedProxy::parse_list(&["10.0.0.1", "::1"])
                .unwrap()
                .len(),
            2
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_walk() {
        let trusted = TrustedProxy::parse_list(&["10.0.0.0/8", "127.0.0.1"]).unwrap();
        // Untrusted peer: header ignored.
        assert_eq!(
            client_ip_from(Some(ip("8.8.8.8")), &["1.1.1.1"], &trusted),
            ip("8.8.8.8")
        );
        // Trusted peer: rightmost untrusted entry wins, trusted hops are skipped.
        assert_eq!(
            client_ip_from(
                Some(ip("10.0.0.5")),
                &["6.6.6.6, 1.2.3.4, 10.0.0.9"],
                &trusted
            ),
            ip("1.2.3.4")
        );
        // Several header lines count as one list, in order.
        assert_eq!(
            client_ip_from(
                Some(ip("127.0.0.1")),
                &["6.6.6.6", "1.2.3.4, 10.0.0.9"],
                &trusted
            ),
            ip("1.2.3.4")
        );
        // Ports and brackets are tolerated.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.5")), &["[2001:db8::1]:443"], &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.5")), &["1.2.3.4:5678"], &trusted),
            ip("1.2.3.4")
        );
        // Garbage stops the walk at the last address we could vouch for.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.5")), &["1.2.3.4, garbage"], &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.5")), &["garbage, 10.0.0.7"], &trusted),
            ip("10.0.0.7")
        );
        // No header, or only trusted hops.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.5")), &[], &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.5")), &["10.0.0.8"], &trusted),
            ip("10.0.0.8")
        );
        // Dual-stack mapped peer is treated as IPv4.
        assert_eq!(
            client_ip_from(Some(ip("::ffff:10.0.0.5")), &["1.2.3.4"], &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(client_ip_from(None, &["1.2.3.4"], &trusted), ip("0.0.0.0"));
    }

    #[test]
    fn client_ip_from_actix_requests() {
        use actix_web::test::TestRequest;
        let trusted = TrustedProxy::parse_list(&["10.0.0.1"]).unwrap();
        let req = TestRequest::default()
            .peer_addr("8.8.8.8:1234".parse().unwrap())
            .insert_header(("X-Forwarded-For", "1.2.3.4"))
            .to_http_request();
        assert_eq!(
            client_ip(&req, &trusted),
            ip("8.8.8.8"),
            "untrusted peer: XFF ignored"
        );
        assert_eq!(client_ip(&req, &[]), ip("8.8.8.8"));
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:1234".parse().unwrap())
            .insert_header(("X-Forwarded-For", "1.2.3.4"))
            .to_http_request();
        assert_eq!(
            client_ip(&req, &trusted),
            ip("1.2.3.4"),
            "trusted proxy: XFF honoured"
        );
        assert_eq!(
            client_ip(&req, &[]),
            ip("10.0.0.1"),
            "no trusted proxies configured"
        );
        let req = TestRequest::default().to_http_request();
        assert_eq!(client_ip(&req, &trusted), ip("0.0.0.0"));
    }

    #[test]
    fn ip_keys_group_ipv6_by_64() {
        assert_eq!(ip_key(ip("1.2.3.4")), "1.2.3.4");
        assert_eq!(ip_key(ip("::ffff:1.2.3.4")), "1.2.3.4");
        assert_eq!(ip_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            ip_key(ip("2001:db8:1:2:bbbb::9")),
            ip_key(ip("2001:db8:1:2::1"))
        );
        assert_ne!(ip_key(ip("2001:db8:1:3::1")), ip_key(ip("2001:db8:1:2::1")));
    }

    #[test]
    fn settings_defaults_apply_to_partial_config() {
        let s: RateLimitSettings =
            serde_json::from_str(r#"{"login_per_ip_per_minute": 5}"#).unwrap();
        assert!(s.enabled);
        assert_eq!(s.login_per_ip_per_minute, 5);
        assert_eq!(s.token_per_ip_per_minute, 300);
        assert_eq!(s.max_tracked_keys, 100_000);
    }
}
