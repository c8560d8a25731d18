//! Rate limits shared by every replica through Redis (`rate_limit.redis_url`).
//!
//! Each decision is one call of an atomic Lua script ([`GCRA`]) that runs the algorithm
//! `governor` runs in process (same emission interval and burst tolerance, so a limit
//! reads the same on both backends) on a per-key "theoretical arrival time" kept in
//! Redis. The script reads Redis's own clock (`TIME`): the replicas' clocks are never
//! compared, and because the read-decide-write is one script, no two replicas can spend
//! the same unit of budget. A limit of N per minute is N across all replicas.
//!
//! Keys are `<prefix>:<bucket>:<hash>`, the hash an HMAC-SHA256 of the limited value
//! (username, address, client id, device) under a key derived from the server's stored
//! master secret, which all replicas share through the database: Redis never holds a
//! username or an address in clear, and nobody without the secret can test a guess
//! against a key. Each key expires when its budget is full again, so Redis holds only
//! the keys that are currently throttling something.
//!
//! Redis down or slow (no answer within `rate_limit.redis_timeout_ms`): the decision is
//! taken as `rate_limit.redis_failure` says (per-process limits, no limits, or 503),
//! the outage is logged once when it starts and once when it ends, and `/readyz` shows
//! it. While it lasts, requests no longer wait for Redis: a probe (once a second, from
//! the application's background task) notices the end, and the connection manager of
//! the `redis` crate reconnects by itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use aws_lc_rs::{hkdf, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;

use super::{Bucket, RateLimitSettings, RateLimiter, RedisFailure, Refusal, RetryAfter};

/// GCRA on one key, atomically. KEYS[1]: the key. ARGV[1]: emission interval (µs),
/// ARGV[2]: burst tolerance (µs, interval × (burst − 1)), ARGV[3]: `1` to spend one
/// unit, `0` to only ask. Returns 0 when allowed, else the µs until it would be.
/// Numbers are written with `%d`: Lua's default number format has 14 significant
/// digits, fewer than a µs timestamp.
const GCRA: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local allowed_at = tat - tolerance
if now < allowed_at then
  return allowed_at - now
end
if ARGV[3] == '1' then
  local next_tat = tat + interval
  local ttl_ms = math.ceil((next_tat - now) / 1000)
  redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', string.format('%d', ttl_ms))
end
return 0
"#;

/// The key the probe asks about (never spent, so never written).
const PROBE_KEY: &str = "probe";

/// `Retry-After` of a refusal while the limits cannot be checked (`closed`): about
/// how long the probe takes to notice that Redis is back.
const UNAVAILABLE_RETRY: RetryAfter = RetryAfter(5);

/// The HKDF `info` that separates the key-hashing key from the other keys of the
/// master secret.
const KEY_LABEL: &[u8] = b"auth-server rate-limit keys v1";

/// One bucket's budget in the script's terms (governor's `Quota::per_minute(n)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quota {
    interval_us: u64,
    tolerance_us: u64,
}

impl Quota {
    fn per_minute(n: u32) -> Option<Quota> {
        let n = u64::from(n);
        if n == 0 {
            return None;
        }
        let interval_us = (60_000_000 / n).max(1);
        Some(Quota {
            interval_us,
            tolerance_us: interval_us * (n - 1),
        })
    }
}

/// Checks a `rate_limit.redis_url` (scheme, host, database); the message never
/// repeats the URL, which may hold a password.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "redis" | "redis+unix" | "unix" => {}
        "rediss" => {
            return Err(
                "rediss:// (TLS) is not supported by this build: reach Redis over a private network, a unix socket or a local TLS tunnel"
                    .into(),
            )
        }
        other => {
            return Err(format!(
                "the scheme must be redis:// or redis+unix://, not {other}://"
            ))
        }
    }
    redis::Client::open(url.trim())
        .map(|_| ())
        .map_err(|e| format!("not a usable Redis URL ({})", e.category()))
}

/// Where Redis is, for logs and `/readyz`: the address, never the credentials.
fn endpoint(client: &redis::Client) -> String {
    let info = client.get_connection_info();
    format!("{}/{}", info.addr(), info.redis_settings().db())
}

/// What `/readyz` shows about the shared limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisStatus {
    /// Where Redis is (`host:port/db`, no credentials).
    pub redis: String,
    /// `None` until the first answer or failure.
    pub reachable: Option<bool>,
    /// `rate_limit.redis_failure`: what the limits do while Redis is unreachable.
    pub on_failure: &'static str,
    /// Unix seconds of the first failure of the current outage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<i64>,
    /// Why the latest call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl RedisStatus {
    /// The reason `/readyz` gives while Redis is unreachable.
    pub fn degraded(&self) -> Option<String> {
        if self.reachable != Some(false) {
            return None;
        }
        let meanwhile = match self.on_failure {
            "local" => "each replica counts its own requests (rate_limit.redis_failure = local)",
            "open" => "nothing is rate limited (rate_limit.redis_failure = open)",
            _ => "logins, token requests and registrations are refused (rate_limit.redis_failure = closed)",
        };
        let why = self.last_error.as_deref().unwrap_or("no answer");
        Some(format!(
            "rate limits: Redis at {} unreachable ({why}); meanwhile {meanwhile}",
            self.redis
        ))
    }
}

/// Whether Redis answers, updated by every call. An outage is logged once when it
/// starts and once when it ends, whatever the traffic.
struct Health {
    /// Set during an outage: decisions skip Redis (the fast path reads only this).
    down: AtomicBool,
    /// Whether Redis was asked at all (mirrors `HealthState::contacted` lock-free).
    contacted: AtomicBool,
    state: Mutex<HealthState>,
}

#[derive(Default)]
struct HealthState {
    contacted: bool,
    since: Option<i64>,
    last_error: Option<String>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Health {
    fn new() -> Health {
        Health {
            down: AtomicBool::new(false),
            contacted: AtomicBool::new(false),
            state: Mutex::new(HealthState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn answered(&self, endpoint: &str) {
        if !self.is_down() {
            // The common case, without the lock once the first answer is recorded.
            if !self.contacted.load(Ordering::Relaxed) {
                self.contacted.store(true, Ordering::Relaxed);
                self.lock().contacted = true;
            }
            return;
        }
        let mut state = self.lock();
        state.contacted = true;
        self.contacted.store(true, Ordering::Relaxed);
        if let Some(since) = state.since.take() {
            log::info!(
                "rate limits: Redis at {endpoint} answers again after {} s; limits are shared again",
                (unix_now() - since).max(0)
            );
        }
        state.last_error = None;
        self.down.store(false, Ordering::Relaxed);
    }

    fn failed(&self, endpoint: &str, failure: RedisFailure, reason: String) {
        let mut state = self.lock();
        state.contacted = true;
        self.contacted.store(true, Ordering::Relaxed);
        if state.since.is_none() {
            state.since = Some(unix_now());
            let meanwhile = match failure {
                RedisFailure::Local => "counting per process",
                RedisFailure::Open => "not limiting",
                RedisFailure::Closed => "refusing limited requests",
            };
            log::warn!(
                "rate limits: Redis at {endpoint} unreachable ({reason}); {meanwhile} until it answers (rate_limit.redis_failure = {})",
                failure.as_str()
            );
        }
        state.last_error = Some(reason);
        self.down.store(true, Ordering::Relaxed);
    }

    fn status(&self, endpoint: &str, failure: RedisFailure) -> RedisStatus {
        let state = self.lock();
        RedisStatus {
            redis: endpoint.to_owned(),
            reachable: state.contacted.then_some(!self.is_down()),
            on_failure: failure.as_str(),
            unreachable_since: state.since,
            last_error: state.last_error.clone(),
        }
    }
}

/// The shared limiter: the GCRA script on Redis, the per-process fallback, and the
/// outage state.
pub struct RedisLimiter {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Replaced by the probe when an outage outlasts a reconnection attempt, so that
    /// recovery never depends on how the connection failed.
    connection: RwLock<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    key_hasher: hmac::Key,
    enabled: bool,
    /// Per bucket, in [`Bucket::ALL`] order; `None` when the bucket is off.
    quotas: Vec<Option<Quota>>,
    timeout: Duration,
    failure: RedisFailure,
    /// The per-process limits used while Redis is down (`redis_failure = "local"`).
    fallback: RateLimiter,
    health: Health,
    endpoint: String,
}

impl RedisLimiter {
    /// Builds the limiter without connecting (the first decision or probe does), so a
    /// replica starts while Redis is down. Needs a tokio runtime.
    pub fn new(settings: &RateLimitSettings, key_secret: &[u8]) -> Result<RedisLimiter, String> {
        let url = settings.redis_url.expose().trim();
        check_url(url).map_err(|e| format!("rate_limit.redis_url: {e}"))?;
        let client = redis::Client::open(url).map_err(|e| {
            format!(
                "rate_limit.redis_url: not a usable Redis URL ({})",
                e.category()
            )
        })?;
        let timeout = Duration::from_millis(settings.redis_timeout_ms.max(1));
        // One connection attempt per reconnection: the limiter has its own fallback
        // and probe, and a request must never wait out a retry schedule.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let connection = connect(&client, &config)?;
        let key_hasher = derive_key(key_secret)
            .ok_or_else(|| "deriving the rate-limit key hashing key failed".to_string())?;
        let limiter = RedisLimiter {
            endpoint: endpoint(&client),
            client,
            config,
            connection: RwLock::new(connection),
            script: redis::Script::new(GCRA),
            prefix: settings.redis_prefix.clone(),
            key_hasher,
            enabled: settings.enabled,
            quotas: Bucket::ALL
                .iter()
                .map(|b| Quota::per_minute(b.per_minute(settings)))
                .collect(),
            timeout,
            failure: settings.redis_failure,
            fallback: RateLimiter::new(settings),
            health: Health::new(),
        };
        log::info!(
            "rate limits: shared through Redis at {} (keys {}:*, on failure: {})",
            limiter.endpoint,
            limiter.prefix,
            limiter.failure.as_str()
        );
        Ok(limiter)
    }

    fn quota(&self, bucket: Bucket) -> Option<Quota> {
        if !self.enabled {
            return None;
        }
        self.quotas.get(bucket.index()).copied().flatten()
    }

    /// `<prefix>:<bucket>:<HMAC of the value>` (128 bits, base64url).
    fn redis_key(&self, bucket: Bucket, key: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key_hasher);
        ctx.update(bucket.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(key.as_bytes());
        let tag = ctx.sign();
        let digest = tag.as_ref();
        format!(
            "{}:{}:{}",
            self.prefix,
            bucket.as_str(),
            URL_SAFE_NO_PAD.encode(&digest[..16.min(digest.len())])
        )
    }

    fn connection(&self) -> ConnectionManager {
        match self.connection.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One script call within the timeout: µs to wait (0: allowed), or why it failed.
    async fn eval(&self, key: &str, quota: Quota, charge: bool) -> Result<u64, String> {
        let mut connection = self.connection();
        let mut call = self.script.prepare_invoke();
        call.key(key)
            .arg(quota.interval_us)
            .arg(quota.tolerance_us)
            .arg(if charge { "1" } else { "0" });
        match tokio::time::timeout(self.timeout, call.invoke_async::<i64>(&mut connection)).await {
            Ok(Ok(wait)) => Ok(u64::try_from(wait).unwrap_or(0)),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// A decision for `key` in `bucket`; `charge` spends one unit when allowed.
    pub async fn decide(&self, bucket: Bucket, key: &str, charge: bool) -> Result<(), Refusal> {
        let Some(quota) = self.quota(bucket) else {
            return Ok(());
        };
        if !self.health.is_down() {
            match self.eval(&self.redis_key(bucket, key), quota, charge).await {
                Ok(0) => {
                    self.health.answered(&self.endpoint);
                    return Ok(());
                }
                Ok(wait_us) => {
                    self.health.answered(&self.endpoint);
                    let wait = Duration::from_micros(wait_us);
                    return Err(Refusal::Limited(RetryAfter::from_wait(wait)));
                }
                Err(reason) => self.health.failed(&self.endpoint, self.failure, reason),
            }
        }
        match self.failure {
            RedisFailure::Local => {
                let local = if charge {
                    self.fallback.check(bucket, key)
                } else {
                    self.fallback.peek(bucket, key)
                };
                local.map_err(Refusal::Limited)
            }
            RedisFailure::Open => Ok(()),
            RedisFailure::Closed => Err(Refusal::Unavailable(UNAVAILABLE_RETRY)),
        }
    }

    /// Asks Redis (the script, as decisions do, on a key it never writes) and records
    /// the answer. A failed probe starts a fresh connection manager, so that the next
    /// probe tries a new connection whatever went wrong with the old one.
    pub async fn probe(&self) {
        let key = format!("{}:{PROBE_KEY}", self.prefix);
        let quota = Quota {
            interval_us: 1,
            tolerance_us: 0,
        };
        match self.eval(&key, quota, false).await {
            Ok(_) => self.health.answered(&self.endpoint),
            Err(reason) => {
                self.health.failed(&self.endpoint, self.failure, reason);
                if let Ok(fresh) = connect(&self.client, &self.config) {
                    match self.connection.write() {
                        Ok(mut c) => *c = fresh,
                        Err(poisoned) => *poisoned.into_inner() = fresh,
                    }
                }
            }
        }
    }

    pub fn status(&self) -> RedisStatus {
        self.health.status(&self.endpoint, self.failure)
    }
}

/// A connection manager that connects on first use.
fn connect(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
) -> Result<ConnectionManager, String> {
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| format!("rate_limit.redis_url: {}", describe(&e)))
}

/// A Redis error in a log line or `/readyz`: its kind and, for I/O, the OS reason
/// (never the command or its arguments).
fn describe(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        format!("connection failed: {e}")
    } else {
        match e.code() {
            Some(code) => format!("Redis error {code}"),
            None => e.category().to_string(),
        }
    }
}

/// The key that names the shared keys, derived from the stored master secret (HKDF,
/// under its own label, so it is independent of the other keys of that secret).
fn derive_key(master_secret: &[u8]) -> Option<hmac::Key> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(master_secret);
    let okm = prk.expand(&[KEY_LABEL], hmac::HMAC_SHA256).ok()?;
    Some(hmac::Key::from(okm))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quotas_match_governors_per_minute() {
        assert_eq!(Quota::per_minute(0), None);
        assert_eq!(
            Quota::per_minute(6),
            Some(Quota {
                interval_us: 10_000_000,
                tolerance_us: 50_000_000
            })
        );
        assert_eq!(
            Quota::per_minute(1),
            Some(Quota {
                interval_us: 60_000_000,
                tolerance_us: 0
            })
        );
    }

    #[test]
    fn urls_are_checked_without_being_repeated() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("redis://:pw@redis.internal:6380/2").is_ok());
        assert!(check_url("redis+unix:///run/redis.sock").is_ok());
        let e = check_url("rediss://:hunter2@redis.internal").unwrap_err();
        assert!(e.contains("TLS") && !e.contains("hunter2"), "{e}");
        let e = check_url("http://:hunter2@redis.internal").unwrap_err();
        assert!(e.contains("scheme") && !e.contains("hunter2"), "{e}");
        assert!(check_url("redis://127.0.0.1/notadb").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[tokio::test]
    async fn keys_hide_the_value_and_depend_on_the_secret() {
        let settings = RateLimitSettings {
            redis_url: shared::Secret::new("redis://:hunter2@127.0.0.1:1/3"),
            ..RateLimitSettings::default()
        };
        let a = RedisLimiter::new(&settings, b"master secret of at least 32 bytes!!").unwrap();
        let b = RedisLimiter::new(&settings, b"another master secret of 32 bytes!!!").unwrap();
        let key = a.redis_key(Bucket::LoginUser, "203.0.113.7 alice");
        assert!(key.starts_with("auth-server:rl:login_user:"), "{key}");
        assert!(
            !key.contains("alice") && !key.contains("203.0.113.7"),
            "{key}"
        );
        assert_eq!(key, a.redis_key(Bucket::LoginUser, "203.0.113.7 alice"));
        assert_ne!(key, a.redis_key(Bucket::LoginUser, "203.0.113.7 bob"));
        assert_ne!(key, b.redis_key(Bucket::LoginUser, "203.0.113.7 alice"));
        // The same value in another bucket is another key.
        assert_ne!(
            key.rsplit(':').next(),
            a.redis_key(Bucket::LoginIp, "203.0.113.7 alice")
                .rsplit(':')
                .next()
        );
        // Logs and /readyz name the address, never the password.
        assert_eq!(a.status().redis, "127.0.0.1:1/3");
        assert_eq!(a.status().reachable, None);
    }
}
