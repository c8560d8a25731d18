//! The server's metrics: HTTP traffic, logins, token requests and rate-limit refusals.

use std::time::Duration;

use shared::metrics::{CounterVec, HistogramVec, Registry};

pub struct Metrics {
    registry: Registry,
    http_requests: CounterVec,
    http_latency: HistogramVec,
    logins: CounterVec,
    upstream_logins: CounterVec,
    tokens: CounterVec,
    rate_limited: CounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, shared::metrics::Error> {
        let registry = Registry::new();
        Ok(Metrics {
            http_requests: registry.counter(
                "auth_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            )?,
            http_latency: registry.histogram(
                "auth_http_request_duration_seconds",
                "HTTP request latency by route.",
                &["route"],
                shared::metrics::DEFAULT_LATENCY_BUCKETS,
            )?,
            logins: registry.counter(
                "auth_logins_total",
                "Login attempts by outcome.",
                &["outcome"],
            )?,
            upstream_logins: registry.counter(
                "auth_upstream_logins_total",
                "Sign-ins through an upstream identity provider, by provider and outcome (success, refused, error).",
                &["idp", "outcome"],
            )?,
            tokens: registry.counter(
                "auth_token_requests_total",
                "Token endpoint requests by grant type and outcome.",
                &["grant_type", "outcome"],
            )?,
            rate_limited: registry.counter(
                "auth_rate_limited_total",
                "Requests refused by a rate limit, by bucket.",
                &["bucket"],
            )?,
            registry,
        })
    }

    pub fn http_request(&self, route: &str, method: &str, status: &str, elapsed: Duration) {
        self.http_requests.inc(&[route, method, status]);
        self.http_latency.observe_duration(&[route], elapsed);
    }

    pub fn login(&self, ok: bool) {
        self.logins.inc(&[if ok { "success" } else { "failure" }]);
    }

    pub fn upstream_login(&self, idp: &str, outcome: &str) {
        self.upstream_logins.inc(&[idp, outcome]);
    }

    pub fn token(&self, grant_type: &str, ok: bool) {
        self.tokens
            .inc(&[grant_type, if ok { "success" } else { "error" }]);
    }

    pub fn rate_limited(&self, bucket: &str) {
        self.rate_limited.inc(&[bucket]);
    }

    pub fn render(&self) -> String {
        self.registry.render()
    }
}
