//! Client for the auth-server's admin API (used by the `admin_panel` tool). It
//! authenticates with mcp-server's *own* credentials (client_credentials grant,
//! client_secret_basic, scope `auth:admin`) and caches that token until shortly before
//! it expires. The caller's token is never forwarded.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::Secret;

/// Refresh the cached token this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("mcp-server has no client credentials for the admin API (set auth.client_id and auth.client_secret)")]
    NoCredentials,
    #[error("could not obtain an admin token: {0}")]
    Token(String),
    #[error("the admin API could not be reached: {0}")]
    Unreachable(String),
    #[error("the admin API refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the admin API answered something unexpected: {0}")]
    BadAnswer(String),
}

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

pub struct AdminClient {
    http: reqwest::Client,
    base_url: String,
    token_endpoint: String,
    client_id: String,
    client_secret: Secret,
    cached: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base_url", &self.base_url)
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub token_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct GrantList {
    grants: Vec<Grant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoked {
    pub grant_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub token_ids: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
struct RevokedList {
    revoked: Vec<Revoked>,
}

/// What to revoke: a grant by id, or the one grant owning a token id prefix.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeTarget {
    GrantId(String),
    TokenIdPrefix(String),
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `application/x-www-form-urlencoded` encoding of one credential, as RFC 6749 §2.3.1
/// requires before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl AdminClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        token_endpoint: &str,
        client_id: &str,
        client_secret: Secret,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token_endpoint: token_endpoint.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn token(&self, force: bool) -> Result<Secret, AdminError> {
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(AdminError::NoCredentials);
        }
        let mut cached = self.cached.lock().await;
        if !force {
            if let Some(c) = cached.as_ref() {
                if Instant::now() < c.refresh_at {
                    return Ok(c.token.clone());
                }
            }
        }
        let response = self
            .http
            .post(&self.token_endpoint)
            .basic_auth(
                form_encode(&self.client_id),
                Some(form_encode(self.client_secret.expose())),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", shared::scopes::AUTH_ADMIN),
            ])
            .send()
            .await
            .map_err(|e| AdminError::Token(format!("token endpoint unreachable: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let reason = body
                .get("error_description")
                .or_else(|| body.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no details")
                .to_string();
            return Err(AdminError::Token(format!("{status}: {reason}")));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| AdminError::Token(format!("unreadable token response: {e}")))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(60));
        let secret = Secret::new(token.access_token);
        *cached = Some(CachedToken {
            token: secret.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        });
        Ok(secret)
    }

    /// Sends an authenticated request; on 401 refreshes the token once and retries.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let url = format!("{}{}", self.base_url, path);
        let mut force = false;
        loop {
            let token = self.token(force).await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose());
            if let Some(b) = &body {
                request = request.json(b);
            }
            let response = request
                .send()
                .await
                .map_err(|e| AdminError::Unreachable(e.to_string()))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !force {
                force = true;
                continue;
            }
            let value: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let message = value
                    .get("error_description")
                    .or_else(|| value.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("no details")
                    .to_string();
                return Err(AdminError::Refused {
                    status: status.as_u16(),
                    message,
                });
            }
            return Ok(value);
        }
    }

    pub async fn list_grants(&self) -> Result<Vec<Grant>, AdminError> {
        let v = self
            .call(reqwest::Method::GET, "/admin/grants", None)
            .await?;
        let list: GrantList =
            serde_json::from_value(v).map_err(|e| AdminError::BadAnswer(e.to_string()))?;
        Ok(list.grants)
    }

    pub async fn revoke(&self, target: &RevokeTarget) -> Result<Vec<Revoked>, AdminError> {
        let body = match target {
            RevokeTarget::GrantId(id) => serde_json::json!({ "grant_id": id }),
            RevokeTarget::TokenIdPrefix(p) => serde_json::json!({ "token_id_prefix": p }),
        };
        let v = self
            .call(reqwest::Method::POST, "/admin/grants/revoke", Some(body))
            .await?;
        let list: RevokedList =
            serde_json::from_value(v).map_err(|e| AdminError::BadAnswer(e.to_string()))?;
        Ok(list.revoked)
    }

    pub async fn user_stats(&self) -> Result<Value, AdminError> {
        self.call(reqwest::Method::GET, "/admin/stats/users", None)
            .await
    }
}

/// Whether `base_url` serves the admin API: it answers `GET /admin/grants` without a
/// token with a Bearer challenge (401/403 + `WWW-Authenticate: Bearer`).
pub async fn probe(http: &reqwest::Client, base_url: &str) -> bool {
    let url = format!("{}/admin/grants", base_url.trim_end_matches('/'));
    match http.get(&url).send().await {
        Ok(r) => {
            let challenged = r
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("bearer"));
            matches!(r.status().as_u16(), 401 | 403) && challenged
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_form_encoded_before_basic() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
        assert_eq!(form_encode("mcp-server"), "mcp-server");
    }
}
