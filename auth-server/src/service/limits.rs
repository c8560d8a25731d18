//! The rate-limit policy of the flows: which budget each request spends.

use std::net::IpAddr;
use std::sync::Arc;

use crate::ratelimit::{ip_key, Bucket, Limiter, LimitsStatus, Refusal};
use crate::settings::Settings;

use super::metrics::Metrics;
use super::{ServiceError, ServiceResult};

/// The budgets of the flows, on the limiter the settings chose (per process, or
/// shared through Redis).
pub struct Limits {
    limiter: Limiter,
    metrics: Arc<Metrics>,
}

/// Where a login attempt comes from, which decides the budgets it spends.
///
/// A stranger spends the budget of its address (every attempt) and, on failure, the
/// budget of (username, address). Failures from one address therefore never throttle
/// the same username elsewhere: a stranger cannot lock a user out, however many
/// addresses it guesses from. A browser that signed in as that username before shows
/// its device cookie (OWASP, "Slow down online guessing attacks with device cookies")
/// and spends only the budget of that device, so it signs in even while strangers
/// exhaust the budgets of its own address; the device's budget stops a stolen device
/// cookie from guessing freely.
///
/// There is deliberately no global per-username budget for strangers: it would let
/// anyone lock the user out of every browser without a device cookie (a new laptop,
/// a private window), which is the lockout this design removes. Guessing spread over
/// many addresses is slowed by the per-address budgets, the Argon2 cost of each try
/// and the response-time floor of the login.
#[derive(Debug, Clone, Copy)]
pub enum LoginOrigin<'a> {
    /// A browser with a valid device cookie for the username tried: the device id.
    KnownDevice(&'a str),
    /// Anyone else, by client address.
    Stranger(IpAddr),
}

/// The (username, address) key of a stranger's failures; `None` without a username.
/// Usernames compare case-insensitively; IPv6 addresses count by /64 ([`ip_key`]).
fn stranger_key(ip: IpAddr, username: &str) -> Option<String> {
    (!username.is_empty()).then(|| format!("{} {}", ip_key(ip), username.to_lowercase()))
}

impl Limits {
    /// `key_secret`: the stored master secret, which keys the names of shared keys.
    pub fn new(
        settings: &Settings,
        metrics: Arc<Metrics>,
        key_secret: &[u8],
    ) -> Result<Limits, String> {
        Ok(Limits {
            limiter: Limiter::new(&settings.rate_limit, key_secret)?,
            metrics,
        })
    }

    /// The error of a refusal; refusals by a spent budget are counted by bucket.
    fn refused(&self, bucket: Bucket, refusal: Refusal) -> ServiceError {
        match refusal {
            Refusal::Limited(r) => {
                self.metrics.rate_limited(bucket.as_str());
                ServiceError::RateLimited {
                    retry_after_secs: r.0.max(1),
                }
            }
            Refusal::Unavailable(r) => ServiceError::TemporarilyUnavailable {
                retry_after_secs: r.0.max(1),
            },
        }
    }

    async fn spend(&self, bucket: Bucket, key: &str) -> ServiceResult<()> {
        self.limiter
            .check(bucket, key)
            .await
            .map_err(|r| self.refused(bucket, r))
    }

    async fn peek(&self, bucket: Bucket, key: &str) -> ServiceResult<()> {
        self.limiter
            .peek(bucket, key)
            .await
            .map_err(|r| self.refused(bucket, r))
    }

    /// Before a login attempt (see [`LoginOrigin`] for the budgets). Budgets charged
    /// only on failure are peeked here and spent by [`Self::charge_failed_login`], so
    /// successful logins never lock a user out.
    pub async fn check_login(&self, origin: LoginOrigin<'_>, username: &str) -> ServiceResult<()> {
        match origin {
            LoginOrigin::KnownDevice(device) => self.peek(Bucket::LoginDevice, device).await,
            LoginOrigin::Stranger(ip) => {
                self.spend(Bucket::LoginIp, &ip_key(ip)).await?;
                match stranger_key(ip, username) {
                    Some(key) => self.peek(Bucket::LoginUser, &key).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// After a failed login (wrong password, unknown or disabled user alike).
    pub async fn charge_failed_login(&self, origin: LoginOrigin<'_>, username: &str) {
        let (bucket, key) = match origin {
            LoginOrigin::KnownDevice(device) => (Bucket::LoginDevice, device.to_owned()),
            LoginOrigin::Stranger(ip) => match stranger_key(ip, username) {
                Some(key) => (Bucket::LoginUser, key),
                None => return,
            },
        };
        // A refusal here only means the budget is already spent (the next attempt is
        // refused by `check_login`), or that it cannot be counted now.
        let _ = self.limiter.check(bucket, &key).await;
    }

    /// Before a sign-in starts at an upstream identity provider: it spends the
    /// address's login budget (each start stores a pending sign-in). A callback
    /// for no sign-in we know spends it too, as a failed login does.
    pub async fn check_upstream_start(&self, ip: IpAddr) -> ServiceResult<()> {
        self.spend(Bucket::LoginIp, &ip_key(ip)).await
    }

    pub async fn check_register(&self, ip: IpAddr) -> ServiceResult<()> {
        self.spend(Bucket::RegisterIp, &ip_key(ip)).await
    }

    pub async fn check_token_ip(&self, ip: IpAddr) -> ServiceResult<()> {
        self.spend(Bucket::TokenIp, &ip_key(ip)).await
    }

    pub async fn check_token_client(&self, client_id: &str) -> ServiceResult<()> {
        self.spend(Bucket::TokenClient, client_id).await
    }

    /// Whether the limits are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.limiter.is_shared()
    }

    /// Asks the shared backend whether it answers (see `Limiter::probe`).
    pub async fn probe(&self) {
        self.limiter.probe().await;
    }

    /// What `/readyz` shows about the limits.
    pub fn status(&self) -> LimitsStatus {
        self.limiter.status()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(tweak: impl FnOnce(&mut Settings)) -> Limits {
        let mut settings = Settings::default();
        tweak(&mut settings);
        let secret = [7u8; 32];
        Limits::new(&settings, Arc::new(Metrics::new().unwrap()), &secret).unwrap()
    }

    #[tokio::test]
    async fn ipv6_clients_share_a_budget_per_64() {
        let limits = limits(|s| s.rate_limit.register_per_ip_per_minute = 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check_register(a).await.is_ok());
        // Rotating addresses inside the same /64 does not buy a new budget.
        assert!(matches!(
            limits.check_register(b).await,
            Err(ServiceError::RateLimited { .. })
        ));
        assert!(limits.check_register(other).await.is_ok());
    }

    #[tokio::test]
    async fn successful_logins_do_not_spend_the_username_budget() {
        let limits = limits(|s| s.rate_limit.login_per_user_per_minute = 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let here = LoginOrigin::Stranger(ip);
        for _ in 0..10 {
            assert!(limits.check_login(here, "alice").await.is_ok());
        }
        limits.charge_failed_login(here, "Alice").await;
        limits.charge_failed_login(here, "alice").await;
        assert!(matches!(
            limits.check_login(here, "ALICE").await,
            Err(ServiceError::RateLimited { .. })
        ));
        assert!(limits.check_login(here, "bob").await.is_ok());
    }

    #[tokio::test]
    async fn failures_throttle_a_username_only_from_the_address_they_come_from() {
        let limits = limits(|s| s.rate_limit.login_per_user_per_minute = 2);
        let attacker = LoginOrigin::Stranger("10.0.0.1".parse().unwrap());
        let user = LoginOrigin::Stranger("10.0.0.2".parse().unwrap());
        for _ in 0..5 {
            limits.charge_failed_login(attacker, "alice").await;
        }
        assert!(limits.check_login(attacker, "alice").await.is_err());
        assert!(limits.check_login(user, "alice").await.is_ok());
        // A known device is not a stranger, even at the attacker's address ...
        let device = LoginOrigin::KnownDevice("device-1");
        assert!(limits.check_login(device, "alice").await.is_ok());
        // ... and has a budget of its own.
        let limits = limits_with_device_budget(2);
        limits.charge_failed_login(device, "alice").await;
        limits.charge_failed_login(device, "alice").await;
        assert!(limits.check_login(device, "alice").await.is_err());
        assert!(limits
            .check_login(LoginOrigin::KnownDevice("device-2"), "alice")
            .await
            .is_ok());
    }

    fn limits_with_device_budget(n: u32) -> Limits {
        limits(|s| s.rate_limit.login_per_device_per_minute = n)
    }
}
