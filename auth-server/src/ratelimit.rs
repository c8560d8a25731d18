//! Keyed rate limits for login, registration and token requests, and the client-IP rule
//! used to key them.
//!
//! The algorithm is GCRA: in process it and its per-key state are `governor`'s; shared
//! across replicas ([`redis_store`], when `rate_limit.redis_url` is set) the same GCRA runs
//! as one atomic script inside Redis. [`Limiter`] is the one interface over both, chosen
//! at start. CIDR matching is `ipnet`'s. This module holds the policy: which [`Bucket`]s
//! exist and their rates (`N` requests per minute per key, with a burst of `N`), how many
//! keys they may remember, how a refusal becomes a `Retry-After`, and which address a
//! request is counted against ([`client_ip`]).

pub mod redis_store;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{HashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::Quota;
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use shared::Secret;

use self::redis_store::{RedisLimiter, RedisStatus};

/// Settings of the rate limiter (`[rate_limit]` in the config file). A limit of 0 switches
/// that bucket off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Switch every limit off (benchmarks).
    pub enabled: bool,
    /// Login attempts (POSTs of the login form) per client IP.
    pub login_per_ip_per_minute: u32,
    /// Failed login attempts for one username from one client address (successful
    /// logins are not counted, and other addresses keep their own budget, so nobody
    /// can lock a user out from elsewhere). Unknown usernames count the same way.
    pub login_per_user_per_minute: u32,
    /// Failed login attempts from a browser holding a device cookie for that username
    /// (it signed in as that user before), whatever its address.
    pub login_per_device_per_minute: u32,
    /// Dynamic client registrations per client IP.
    pub register_per_ip_per_minute: u32,
    /// Token endpoint calls per client IP.
    pub token_per_ip_per_minute: u32,
    /// Token endpoint calls per client_id.
    pub token_per_client_per_minute: u32,
    /// Upper bound on keys remembered across all buckets (in this process: the
    /// per-process limits, and their fallback while Redis is down).
    pub max_tracked_keys: usize,
    /// Share every limit and login throttle across replicas through this Redis
    /// (`redis://[[user]:password@]host[:port][/db]` or `redis+unix:///path`). Empty:
    /// each process keeps its own limits and Redis is never contacted.
    pub redis_url: Secret,
    /// The prefix of every key written to Redis; deployments sharing one Redis need
    /// their own. The rest of a key is a keyed hash: no username or address in clear.
    pub redis_prefix: String,
    /// What the limits do while Redis does not answer: `local` counts per process (as
    /// without Redis), `open` lets every request through, `closed` refuses what is
    /// limited (503). Each outage is logged once and shown by `/readyz`.
    pub redis_failure: RedisFailure,
    /// How long a decision waits for Redis before counting it as down, in ms.
    pub redis_timeout_ms: u64,
}

/// `rate_limit.redis_failure`: the limits while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisFailure {
    /// Per-process limits, like a single node (a limit of N becomes N per replica).
    #[default]
    Local,
    /// No limits at all until Redis is back.
    Open,
    /// Refuse every limited request (logins, token requests, registrations) with 503.
    Closed,
}

impl RedisFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisFailure::Local => "local",
            RedisFailure::Open => "open",
            RedisFailure::Closed => "closed",
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_ip_per_minute: 60,
            login_per_user_per_minute: 20,
            login_per_device_per_minute: 10,
            register_per_ip_per_minute: 60,
            token_per_ip_per_minute: 300,
            token_per_client_per_minute: 300,
            max_tracked_keys: 100_000,
            redis_url: Secret::default(),
            redis_prefix: "auth-server:rl".into(),
            redis_failure: RedisFailure::Local,
            redis_timeout_ms: 200,
        }
    }
}

impl RateLimitSettings {
    /// Whether the limits are shared through Redis.
    pub fn shared(&self) -> bool {
        !self.redis_url.expose().trim().is_empty()
    }

    /// Checks the Redis settings (when shared); the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !self.shared() {
            return Ok(());
        }
        redis_store::check_url(self.redis_url.expose())
            .map_err(|e| format!("rate_limit.redis_url: {e}"))?;
        let prefix = &self.redis_prefix;
        if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "rate_limit.redis_prefix {prefix:?} must be 1 to 64 characters without spaces"
            ));
        }
        if !(1..=10_000).contains(&self.redis_timeout_ms) {
            return Err("rate_limit.redis_timeout_ms must be between 1 and 10000".into());
        }
        Ok(())
    }
}

/// What is being limited, and by which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    LoginIp,
    LoginUser,
    LoginDevice,
    RegisterIp,
    TokenIp,
    TokenClient,
}

impl Bucket {
    pub const ALL: [Bucket; 6] = [
        Bucket::LoginIp,
        Bucket::LoginUser,
        Bucket::LoginDevice,
        Bucket::RegisterIp,
        Bucket::TokenIp,
        Bucket::TokenClient,
    ];

    fn index(self) -> usize {
        match self {
            Bucket::LoginIp => 0,
            Bucket::LoginUser => 1,
            Bucket::LoginDevice => 2,
            Bucket::RegisterIp => 3,
            Bucket::TokenIp => 4,
            Bucket::TokenClient => 5,
        }
    }

    /// A short name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::LoginIp => "login_ip",
            Bucket::LoginUser => "login_user",
            Bucket::LoginDevice => "login_device",
            Bucket::RegisterIp => "register_ip",
            Bucket::TokenIp => "token_ip",
            Bucket::TokenClient => "token_client",
        }
    }

    fn per_minute(self, s: &RateLimitSettings) -> u32 {
        match self {
            Bucket::LoginIp => s.login_per_ip_per_minute,
            Bucket::LoginUser => s.login_per_user_per_minute,
            Bucket::LoginDevice => s.login_per_device_per_minute,
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

impl RetryAfter {
    /// Whole seconds, rounded up, so that a client retrying on time is let through.
    pub fn from_wait(wait: Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self(secs.max(1))
    }
}

/// A rate-limit key and whether the decision is charged: a peek asks the same question
/// without spending from the budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe {
    key: String,
    charge: bool,
}

/// governor's mutex-guarded map of per-key states, bounded to `capacity` keys and able to
/// answer a peek. A new key that finds the map full of active keys is decided as a fresh
/// key but not remembered, so a flood of invented keys cannot grow memory.
struct KeyStore {
    states: HashMapStateStore<String>,
    capacity: usize,
}

/// The stored theoretical arrival time, read by a decision that always declines to write.
fn stored_tat(state: &InMemoryState) -> Option<Nanos> {
    state
        .measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
        .err()
        .flatten()
}

impl StateStore for KeyStore {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe, decide: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut states = self.states.lock();
        match states.get(&probe.key) {
            Some(state) if probe.charge => state.measure_and_replace(&NotKeyed::NonKey, decide),
            Some(state) => decide(stored_tat(state)).map(|(outcome, _)| outcome),
            None if probe.charge && states.len() < self.capacity => states
                .entry(probe.key.clone())
                .or_default()
                .measure_and_replace(&NotKeyed::NonKey, decide),
            None => decide(None).map(|(outcome, _)| outcome),
        }
    }
}

impl ShrinkableKeyedStateStore<Probe> for KeyStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.states.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.states.shrink_to_fit();
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.states)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.states)
    }
}

type KeyedLimiter<C> =
    governor::RateLimiter<Probe, KeyStore, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Keyed limiter for the [`Bucket`]s. All methods take `&self`; share it in `web::Data`.
pub struct RateLimiter<C: Clock = MonotonicClock> {
    enabled: bool,
    /// One limiter per bucket, in [`Bucket::index`] order; `None` when the bucket is off.
    buckets: Vec<Option<KeyedLimiter<C>>>,
    keys_per_bucket: usize,
}

impl<C: Clock + Clone> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.enabled)
            .field("tracked_keys", &self.tracked_keys())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self::with_clock(settings, MonotonicClock)
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    fn with_clock(settings: &RateLimitSettings, clock: C) -> Self {
        let keys_per_bucket = settings.max_tracked_keys.div_ceil(Bucket::ALL.len()).max(1);
        let buckets = Bucket::ALL
            .iter()
            .map(|b| {
                let quota = Quota::per_minute(NonZeroU32::new(b.per_minute(settings))?);
                let store = KeyStore {
                    states: HashMapStateStore::default(),
                    capacity: keys_per_bucket,
                };
                Some(governor::RateLimiter::new(quota, store, clock.clone()))
            })
            .collect();
        Self {
            enabled: settings.enabled,
            buckets,
            keys_per_bucket,
        }
    }

    fn limiter(&self, bucket: Bucket) -> Option<&KeyedLimiter<C>> {
        if !self.enabled {
            return None;
        }
        self.buckets.get(bucket.index()).and_then(Option::as_ref)
    }

    fn decide(&self, bucket: Bucket, key: &str, charge: bool) -> Result<(), RetryAfter> {
        let Some(limiter) = self.limiter(bucket) else {
            return Ok(());
        };
        if charge && limiter.len() >= self.keys_per_bucket {
            // Keys whose budget has fully recovered carry no information: forget them
            // before a new key is refused a place.
            limiter.retain_recent();
        }
        let probe = Probe {
            key: key.to_owned(),
            charge,
        };
        limiter.check_key(&probe).map_err(|not_until| {
            RetryAfter::from_wait(not_until.wait_time_from(limiter.clock().now()))
        })
    }

    /// Counts one request for `key` in `bucket`: `Ok` if it may proceed, else how long to
    /// wait. Always `Ok` when the limiter or the bucket is switched off.
    pub fn check(&self, bucket: Bucket, key: &str) -> Result<(), RetryAfter> {
        self.decide(bucket, key, true)
    }

    /// Whether `key` would be allowed in `bucket` right now, without counting a request:
    /// for limits that are charged only after the outcome is known (failed logins).
    pub fn peek(&self, bucket: Bucket, key: &str) -> Result<(), RetryAfter> {
        self.decide(bucket, key, false)
    }

    /// Number of keys currently remembered (all buckets).
    pub fn tracked_keys(&self) -> usize {
        self.buckets.iter().flatten().map(|l| l.len()).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// The limiter: per process or shared through Redis
// ---------------------------------------------------------------------------------------------

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its budget is spent: retry after this long.
    Limited(RetryAfter),
    /// The shared limits cannot be checked now (Redis down, `redis_failure = "closed"`).
    Unavailable(RetryAfter),
}

/// The rate limits of this process, chosen at start: kept in memory (`governor`), or
/// shared with every replica through Redis (`rate_limit.redis_url`).
pub enum Limiter {
    Local(RateLimiter),
    Redis(Box<RedisLimiter>),
}

/// What `/readyz` shows about the limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitsStatus {
    /// `local` (per process) or `redis` (shared).
    pub backend: &'static str,
    /// The shared backend's state; absent for per-process limits.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisStatus>,
}

impl LimitsStatus {
    /// Why the limits are degraded (the shared backend is unreachable), if they are.
    pub fn degraded(&self) -> Option<String> {
        self.redis.as_ref().and_then(RedisStatus::degraded)
    }
}

impl Limiter {
    /// The limiter `settings` ask for. `key_secret` (the server's stored master secret,
    /// the same on every replica) keys the hashes that name the shared keys.
    pub fn new(settings: &RateLimitSettings, key_secret: &[u8]) -> Result<Limiter, String> {
        if settings.shared() {
            Ok(Limiter::Redis(Box::new(RedisLimiter::new(
                settings, key_secret,
            )?)))
        } else {
            Ok(Limiter::Local(RateLimiter::new(settings)))
        }
    }

    /// Counts one request for `key` in `bucket` (see [`RateLimiter::check`]).
    pub async fn check(&self, bucket: Bucket, key: &str) -> Result<(), Refusal> {
        match self {
            Limiter::Local(l) => l.check(bucket, key).map_err(Refusal::Limited),
            Limiter::Redis(r) => r.decide(bucket, key, true).await,
        }
    }

    /// Whether `key` would pass in `bucket` now, without counting a request.
    pub async fn peek(&self, bucket: Bucket, key: &str) -> Result<(), Refusal> {
        match self {
            Limiter::Local(l) => l.peek(bucket, key).map_err(Refusal::Limited),
            Limiter::Redis(r) => r.decide(bucket, key, false).await,
        }
    }

    /// Whether the limits are shared (and so have a backend that can be down).
    pub fn is_shared(&self) -> bool {
        matches!(self, Limiter::Redis(_))
    }

    /// Asks the shared backend whether it answers, so an outage shows (and its end is
    /// noticed) with no traffic. Nothing to ask for per-process limits.
    pub async fn probe(&self) {
        if let Limiter::Redis(r) = self {
            r.probe().await;
        }
    }

    pub fn status(&self) -> LimitsStatus {
        match self {
            Limiter::Local(_) => LimitsStatus {
                backend: "local",
                redis: None,
            },
            Limiter::Redis(r) => LimitsStatus {
                backend: "redis",
                redis: Some(r.status()),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trusted proxies and the client IP
// ---------------------------------------------------------------------------------------------

/// A trusted proxy: one address or a CIDR network (`10.0.0.1`, `10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

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
        self.0.contains(&canonical_ip(ip))
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

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network it denotes, so
/// that it matches the canonical (IPv4) form of the addresses inside it.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(prefix)) =
            (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4net) = Ipv4Net::new(v4, prefix) {
                return IpNet::V4(v4net);
            }
        }
    }
    net
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
        let net = if trimmed.contains('/') {
            trimmed
                .parse::<IpNet>()
                .map_err(|_| err("not a CIDR network with a valid prefix length"))?
        } else {
            trimmed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| err("not an IP address"))?
        };
        // Host bits are ignored: 10.1.2.3/8 means 10.0.0.0/8.
        Ok(Self(canonical_net(net).trunc()))
    }
}

impl fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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
            let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
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
mod tests {
    use super::*;

    use governor::clock::FakeRelativeClock;

    const SEC: u64 = 1_000_000_000;

    /// A limiter on a clock the test sets: `check_at`/`peek_at` take nanoseconds since
    /// the limiter was created, and time only moves forward.
    struct Timed {
        limiter: RateLimiter<FakeRelativeClock>,
        clock: FakeRelativeClock,
    }

    impl std::ops::Deref for Timed {
        type Target = RateLimiter<FakeRelativeClock>;
        fn deref(&self) -> &Self::Target {
            &self.limiter
        }
    }

    impl Timed {
        fn at(&self, now: u64) {
            let current = self.clock.now().as_u64();
            assert!(now >= current, "the test clock only moves forward");
            self.clock.advance(Duration::from_nanos(now - current));
        }

        fn check_at(&self, bucket: Bucket, key: &str, now: u64) -> Result<(), RetryAfter> {
            self.at(now);
            self.limiter.check(bucket, key)
        }

        fn peek_at(&self, bucket: Bucket, key: &str, now: u64) -> Result<(), RetryAfter> {
            self.at(now);
            self.limiter.peek(bucket, key)
        }
    }

    fn limiter(f: impl FnOnce(&mut RateLimitSettings)) -> Timed {
        let mut s = RateLimitSettings::default();
        f(&mut s);
        let clock = FakeRelativeClock::default();
        Timed {
            limiter: RateLimiter::with_clock(&s, clock.clone()),
            clock,
        }
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
        assert_eq!(rl.tracked_keys(), 1, "a peek remembers nothing");
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
            s.max_tracked_keys = 192; // 32 per bucket
            s.token_per_ip_per_minute = 60;
        });
        for i in 0..10_000 {
            assert!(rl.check_at(Bucket::TokenIp, &format!("k{i}"), 0).is_ok());
        }
        assert!(rl.tracked_keys() <= 192, "{}", rl.tracked_keys());
        // Later, idle keys are swept to make room for new ones.
        for i in 0..100 {
            assert!(rl
                .check_at(Bucket::TokenIp, &format!("late{i}"), 120 * SEC)
                .is_ok());
        }
        assert!(rl.tracked_keys() <= 192);
        assert!(
            rl.check_at(Bucket::TokenIp, "late0", 120 * SEC).is_ok(),
            "a remembered key keeps its budget"
        );
        for _ in 0..59 {
            let _ = rl.check(Bucket::TokenIp, "late0");
        }
        assert!(
            rl.check(Bucket::TokenIp, "late0").is_err(),
            "new keys are tracked once idle ones are swept"
        );
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
        let mapped: TrustedProxy = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains("10.2.3.4".parse().unwrap()));
        let p: TrustedProxy = "[::1]".parse().unwrap();
        assert!(p.contains("::1".parse().unwrap()));
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
