//! RFC 7662 token introspection with the RS's own client credentials
//! (client_secret_basic), with the same `iss`/`aud`/`exp` rules as for JWTs and a
//! bounded cache: an active answer is reused until min(exp, now + max TTL).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::future::BoxFuture;
use reqwest::header::HeaderValue;

use super::cache::{token_key, TokenCache};
use super::claims::{check_token_type, ClaimRules, ClaimSource, RawClaims};
use super::discovery::{
    describe_reqwest_error, read_limited, AS_REQUEST_TIMEOUT, MAX_DOCUMENT_BYTES,
};
use super::upstream::{UpstreamHealth, UpstreamStatus};
use super::{unix_now, Principal, TokenVerifier, VerifyError, MAX_TOKEN_BYTES};

/// `Authorization: Basic ...` for client_secret_basic: RFC 6749 §2.3.1 wants the id
/// and secret form-urlencoded before base64.
pub fn basic_auth_header(client_id: &str, client_secret: &str) -> Option<HeaderValue> {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", encode(client_id), encode(client_secret));
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

pub struct IntrospectionVerifier {
    /// Set while the AS refuses our client credentials (401/403 from the introspection
    /// endpoint): nothing can be verified then, so `/readyz` reports not ready.
    credentials_refused: AtomicBool,
    upstream: UpstreamHealth,
    endpoint: String,
    http: reqwest::Client,
    authorization: HeaderValue,
    rules: ClaimRules,
    max_ttl_secs: i64,
    cache: TokenCache,
}

impl IntrospectionVerifier {
    pub fn new(
        endpoint: String,
        http: reqwest::Client,
        client_id: &str,
        client_secret: &shared::Secret,
        rules: ClaimRules,
        max_ttl_secs: u64,
        cache_max_entries: usize,
    ) -> Result<Self, String> {
        let authorization =
            basic_auth_header(client_id, client_secret.expose()).ok_or_else(|| {
                "auth.client_id/client_secret cannot be sent in an HTTP header".to_string()
            })?;
        Ok(IntrospectionVerifier {
            credentials_refused: AtomicBool::new(false),
            upstream: UpstreamHealth::default(),
            endpoint,
            http,
            authorization,
            rules,
            max_ttl_secs: i64::try_from(max_ttl_secs).unwrap_or(i64::MAX),
            cache: TokenCache::new(cache_max_entries),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn introspect(&self, token: &str) -> Result<RawClaims, VerifyError> {
        let response = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .timeout(AS_REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                let reason = describe_reqwest_error(&e);
                self.upstream.unreachable(&reason);
                VerifyError::Unavailable(format!("introspection: {reason}"))
            })?;
        let status = response.status();
        if status.is_server_error() {
            self.upstream.unreachable(&format!("HTTP {status}"));
        } else {
            self.upstream.reachable();
        }
        if !status.is_success() {
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                self.credentials_refused.store(true, Ordering::Relaxed);
                log::error!(
                    "introspection endpoint {} refused our client credentials ({status}); check auth.client_id/client_secret",
                    self.endpoint
                );
            }
            return Err(VerifyError::Unavailable(format!(
                "introspection endpoint answered HTTP {status}"
            )));
        }
        self.credentials_refused.store(false, Ordering::Relaxed);
        let body = read_limited(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| VerifyError::Unavailable(format!("introspection: {e}")))?;
        serde_json::from_slice(&body).map_err(|_| {
            VerifyError::Unavailable("introspection answer is not a JSON object".into())
        })
    }
}

/// Pure: an introspection answer to a principal. The RFC 7662 answer rules: `active`
/// must be `true`, `token_type` (when present) must name an access token, then the
/// shared `iss`/`aud`/`exp`/`nbf` rules.
pub fn answer_to_principal(
    rules: &ClaimRules,
    answer: RawClaims,
    now: i64,
) -> Result<Principal, VerifyError> {
    if answer.active != Some(true) {
        return Err(VerifyError::Inactive);
    }
    check_token_type(answer.token_type.as_deref())?;
    rules.principal(answer, ClaimSource::Introspection, now)
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async move {
            if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
                return Err(VerifyError::Malformed);
            }
            let key = token_key(token);
            let now = unix_now();
            if let Some(hit) = self.cache.get(&key, now) {
                return Ok((*hit).clone());
            }
            let answer = self.introspect(token).await?;
            let principal = Arc::new(answer_to_principal(&self.rules, answer, now)?);
            let valid_until = principal
                .expires_at
                .min(now.saturating_add(self.max_ttl_secs));
            self.cache.admit(key, principal.clone(), valid_until, now)?;
            Ok(Arc::unwrap_or_clone(principal))
        })
    }

    fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        self.cache.get(&token_key(token), unix_now())
    }

    fn mode(&self) -> &'static str {
        "introspection"
    }

    fn key_ids(&self) -> Vec<String> {
        Vec::new()
    }

    fn upstream(&self) -> UpstreamStatus {
        self.upstream.status()
    }

    fn is_ready(&self) -> bool {
        !self.credentials_refused.load(Ordering::Relaxed)
    }

    fn deny_token_id(&self, token_id: &str, expires_at: i64) {
        self.cache.deny(token_id, expires_at, unix_now());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "http://127.0.0.1:3001";
    const RES: &str = "http://127.0.0.1:3000/mcp";

    fn rules() -> ClaimRules {
        ClaimRules::new(ISS, vec![RES.into()], 60)
    }

    fn answer(v: serde_json::Value) -> RawClaims {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn basic_auth_is_form_encoded_then_base64() {
        let v = basic_auth_header("rs client", "p@ss:w").unwrap();
        let b64 = v.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let raw = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(raw, "rs+client:p%40ss%3Aw");
        assert!(v.is_sensitive());
    }

    #[test]
    fn answer_rules() {
        let now = 1_000;
        let ok = json!({"active": true, "sub": "u", "aud": RES, "exp": now + 60, "iss": ISS, "token_type": "access_token", "scope": "mcp:read"});
        assert!(answer_to_principal(&rules(), answer(ok.clone()), now).is_ok());
        assert_eq!(
            answer_to_principal(&rules(), answer(json!({"active": false})), now),
            Err(VerifyError::Inactive)
        );
        assert_eq!(
            answer_to_principal(&rules(), answer(json!({})), now),
            Err(VerifyError::Inactive)
        );
        let mut refresh = ok.clone();
        refresh["token_type"] = "refresh_token".into();
        assert_eq!(
            answer_to_principal(&rules(), answer(refresh), now),
            Err(VerifyError::WrongType)
        );
        // The "active refresh token without aud" answer some servers give.
        let no_aud = json!({"active": true, "sub": "u", "exp": now + 60});
        assert_eq!(
            answer_to_principal(&rules(), answer(no_aud), now),
            Err(VerifyError::WrongAudience)
        );
        let mut other_iss = ok.clone();
        other_iss["iss"] = "http://evil".into();
        assert_eq!(
            answer_to_principal(&rules(), answer(other_iss), now),
            Err(VerifyError::WrongIssuer)
        );
        let mut expired = ok;
        expired["exp"] = (now - 61).into();
        assert_eq!(
            answer_to_principal(&rules(), answer(expired), now),
            Err(VerifyError::Expired)
        );
    }
}
