//! The rate-limit policy of the flows: which budget each request spends.

use std::net::IpAddr;
use std::sync::Arc;

use crate::ratelimit::{ip_key, Bucket, RateLimiter, RetryAfter};
use crate::settings::Settings;

use super::metrics::Metrics;
use super::{ServiceError, ServiceResult};

pub struct Limits {
    limiter: RateLimiter,
    metrics: Arc<Metrics>,
}

fn refused(r: RetryAfter) -> ServiceError {
    ServiceError::RateLimited {
        retry_after_secs: r.0.max(1),
    }
}

impl Limits {
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> Limits {
        Limits {
            limiter: RateLimiter::new(&settings.rate_limit),
            metrics,
        }
    }

    fn spend(&self, bucket: Bucket, key: &str) -> ServiceResult<()> {
        self.limiter.check(bucket, key).map_err(|r| {
            self.metrics.rate_limited(bucket.as_str());
            refused(r)
        })
    }

    /// Before a login attempt: every attempt counts against the client IP; the
    /// per-username budget is only checked here (it is charged by
    /// [`Self::charge_failed_login`]), so successful logins never lock a user out.
    pub fn check_login(&self, ip: IpAddr, username: &str) -> ServiceResult<()> {
        self.spend(Bucket::LoginIp, &ip_key(ip))?;
        if !username.is_empty() {
            self.limiter
                .peek(Bucket::LoginUser, &username.to_lowercase())
                .map_err(|r| {
                    self.metrics.rate_limited(Bucket::LoginUser.as_str());
                    refused(r)
                })?;
        }
        Ok(())
    }

    /// After a failed login: counts against the username's budget.
    pub fn charge_failed_login(&self, username: &str) {
        if !username.is_empty() {
            // A refusal here only means the budget is already spent; the next
            // attempt is refused by `check_login`.
            let _ = self
                .limiter
                .check(Bucket::LoginUser, &username.to_lowercase());
        }
    }

    pub fn check_register(&self, ip: IpAddr) -> ServiceResult<()> {
        self.spend(Bucket::RegisterIp, &ip_key(ip))
    }

    pub fn check_token_ip(&self, ip: IpAddr) -> ServiceResult<()> {
        self.spend(Bucket::TokenIp, &ip_key(ip))
    }

    pub fn check_token_client(&self, client_id: &str) -> ServiceResult<()> {
        self.spend(Bucket::TokenClient, client_id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn limits(tweak: impl FnOnce(&mut Settings)) -> Limits {
        let mut settings = Settings::default();
        tweak(&mut settings);
        Limits::new(&settings, Arc::new(Metrics::new().unwrap()))
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let limits = limits(|s| s.rate_limit.register_per_ip_per_minute = 1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.check_register(a).is_ok());
        // Rotating addresses inside the same /64 does not buy a new budget.
        assert!(matches!(
            limits.check_register(b),
            Err(ServiceError::RateLimited { .. })
        ));
        assert!(limits.check_register(other).is_ok());
    }

    #[test]
    fn successful_logins_do_not_spend_the_username_budget() {
        let limits = limits(|s| s.rate_limit.login_per_user_per_minute = 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            assert!(limits.check_login(ip, "alice").is_ok());
        }
        limits.charge_failed_login("Alice");
        limits.charge_failed_login("alice");
        assert!(matches!(
            limits.check_login(ip, "ALICE"),
            Err(ServiceError::RateLimited { .. })
        ));
        assert!(limits.check_login(ip, "bob").is_ok());
    }
}
