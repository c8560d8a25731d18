//! Sign-in through upstream identity providers: auth-server is a strict OAuth client
//! of each `[[identity_providers]]` entry, and stays the authorization server of the
//! MCP clients (they only ever see our tokens).
//!
//! Each attempt gets a fresh `state`, PKCE S256 verifier and OIDC `nonce`. The
//! attempt is stored in the database (`upstream_logins`: hashes of the state, of
//! the browser binding and of the nonce, the verifier sealed with the key-encryption
//! key, and the MCP client's authorization request), so that the callback completes
//! on any replica and after a restart, once, within ten minutes, and only in the
//! browser that started it (its `as_idp` cookie). The callback checks the RFC 9207
//! `iss` when the provider sends one, redeems the code once, verifies the ID token
//! (signature against the provider's JWKS, `iss`, `aud` = our client id, `exp`,
//! `nonce`, `azp`), reads the userinfo endpoint, maps the claims, applies the
//! allow-lists and creates or updates the user (keyed by provider and subject).
//!
//! Upstream access, refresh and ID tokens are used during the callback and then
//! dropped: no feature needs them afterwards, so none is stored.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use shared::secret::{constant_time_eq, random_token, sha256_b64url};
use shared::Secret;
use tokio::sync::RwLock;

use crate::domain::key_encryption::{KeyEncryption, SecretSlot};
use crate::domain::now;
use crate::domain::scope_policy::Role;
use crate::settings::identity_providers::{IdentityProviderConfig, IdpKind, TokenEndpointAuth};
use crate::settings::Settings;
use crate::storage::{StoreError, UpstreamLoginRecord, UserRecord};

use super::authorization::AuthorizeParams;
use super::AppState;

/// How long a sign-in at an identity provider may take.
pub const PENDING_TTL_SECS: i64 = 600;
/// How long a provider's discovery document and keys are reused.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// A JWKS is fetched again for an unknown `kid` at most this often.
const JWKS_REFETCH: Duration = Duration::from_secs(30);
/// Clock skew allowed on the ID token's `exp` / `iat`.
const LEEWAY_SECS: u64 = 60;
/// The most a provider's JSON answer (discovery, JWKS, token, userinfo) may
/// weigh: a misbehaving provider cannot make us buffer more.
const MAX_JSON_BYTES: usize = 256 * 1024;
/// Marks the password hash of a federated user: no password verifies against it.
pub const NO_PASSWORD: &str = "!federated";

/// Why a sign-in at an identity provider did not complete. Every variant ends on
/// our error page, never on the MCP client's redirect.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("There is no identity provider {0:?}.")]
    UnknownProvider(String),
    /// The provider cannot be reached or answered nonsense (discovery, token,
    /// JWKS or userinfo).
    #[error("{display_name} cannot be reached right now ({detail}). Try again in a moment, or use another way to sign in.")]
    Unreachable {
        display_name: String,
        detail: String,
    },
    /// The provider said no (an `error` on the callback or the token endpoint).
    #[error("{display_name} did not sign you in: {detail}")]
    Upstream {
        display_name: String,
        detail: String,
    },
    /// The callback cannot be trusted: unknown, expired or replayed state, another
    /// browser, a mix-up, a bad ID token.
    #[error("The sign-in could not be verified: {0}. Go back to the application and start signing in again.")]
    Invalid(String),
    /// A callback without a sign-in we know (no state, or one we never issued,
    /// expired or completed): anyone can send these.
    #[error("The sign-in could not be verified: {0}. Go back to the application and start signing in again.")]
    UnknownSignIn(&'static str),
    /// The user authenticated upstream but may not sign in here.
    #[error("{0}")]
    Refused(String),
    /// The address's login budget is spent (or cannot be checked now).
    #[error("Too many sign-in attempts. Wait a minute, then try again.")]
    Throttled,
    #[error("The sign-in service had a problem. Please try again in a moment.")]
    Internal(String),
}

impl FederationError {
    /// The audit event and metrics outcome for this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            FederationError::Refused(_)
            | FederationError::Invalid(_)
            | FederationError::UnknownSignIn(_)
            | FederationError::Throttled => "refused",
            _ => "error",
        }
    }
}

impl From<StoreError> for FederationError {
    fn from(e: StoreError) -> Self {
        FederationError::Internal(e.to_string())
    }
}

/// The endpoints of a provider, discovered (OIDC) or configured (OAuth 2.0).
#[derive(Debug, Clone)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: Option<String>,
    /// RFC 9207: the provider promises `iss` on every callback.
    iss_parameter: bool,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: Option<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// One configured provider with its cached discovery and keys.
pub struct Upstream {
    pub config: IdentityProviderConfig,
    secret: Secret,
    redirect_uri: String,
    endpoints: RwLock<Option<(Endpoints, Instant)>>,
    jwks: RwLock<Option<(JwkSet, Instant)>>,
}

/// The configured providers and the HTTP client that talks to them.
pub struct Federation {
    pub providers: Vec<Upstream>,
    http: reqwest::Client,
}

impl Federation {
    pub fn new(settings: &Settings) -> anyhow::Result<Federation> {
        let issuer = settings.issuer();
        let mut providers = Vec::new();
        for (i, p) in settings.identity_providers.iter().enumerate() {
            let secret = p
                .resolve_secret(&format!("identity_providers[{i}]"))
                .map_err(|e| anyhow::anyhow!(e))?;
            providers.push(Upstream {
                redirect_uri: p.redirect_uri(&issuer),
                config: p.clone(),
                secret,
                endpoints: RwLock::new(None),
                jwks: RwLock::new(None),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // The token endpoint's answer is read where it is: a redirect there
            // would carry the code and the client secret elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-oauth-auth-server/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Federation { providers, http })
    }

    pub fn provider(&self, id: &str) -> Result<&Upstream, FederationError> {
        self.providers
            .iter()
            .find(|p| p.config.id == id)
            .ok_or_else(|| FederationError::UnknownProvider(id.to_string()))
    }

    /// The only provider, when password login is off and exactly one is
    /// configured: `/authorize` goes straight to it.
    pub fn sole_provider(&self, settings: &Settings) -> Option<&Upstream> {
        match (settings.login.password, self.providers.as_slice()) {
            (false, [only]) => Some(only),
            _ => None,
        }
    }

    fn unreachable(p: &Upstream, detail: impl Into<String>) -> FederationError {
        FederationError::Unreachable {
            display_name: p.config.display_name.clone(),
            detail: detail.into(),
        }
    }

    async fn get_json(
        &self,
        p: &Upstream,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<Value, FederationError> {
        let mut req = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Self::unreachable(p, describe_http_error(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::unreachable(p, format!("{url} answered {status}")));
        }
        read_json::<Value>(resp)
            .await
            .ok_or_else(|| Self::unreachable(p, format!("{url} did not answer JSON")))
    }

    async fn endpoints(&self, p: &Upstream) -> Result<Endpoints, FederationError> {
        if let Some((e, at)) = p.endpoints.read().await.as_ref() {
            if at.elapsed() < CACHE_TTL {
                return Ok(e.clone());
            }
        }
        let c = &p.config;
        let endpoints = match c.kind {
            IdpKind::Oauth2 => Endpoints {
                issuer: c.issuer.clone(),
                authorization_endpoint: c.authorization_endpoint.clone(),
                token_endpoint: c.token_endpoint.clone(),
                userinfo_endpoint: Some(c.userinfo_endpoint.clone()),
                jwks_uri: None,
                iss_parameter: false,
            },
            IdpKind::Oidc => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    c.issuer.trim_end_matches('/')
                );
                let doc = self.get_json(p, &url, None).await?;
                let d: Discovery = serde_json::from_value(doc).map_err(|e| {
                    Self::unreachable(p, format!("its discovery document is unusable: {e}"))
                })?;
                // OIDC Discovery §4.3: the document must name the issuer we asked.
                if d.issuer != c.issuer {
                    return Err(Self::unreachable(
                        p,
                        format!(
                            "its discovery document names the issuer {:?}, not {:?}",
                            d.issuer, c.issuer
                        ),
                    ));
                }
                check_discovered(p, "authorization_endpoint", &d.authorization_endpoint)?;
                check_discovered(p, "token_endpoint", &d.token_endpoint)?;
                for (name, url) in [
                    ("userinfo_endpoint", &d.userinfo_endpoint),
                    ("jwks_uri", &d.jwks_uri),
                ] {
                    if let Some(url) = url {
                        check_discovered(p, name, url)?;
                    }
                }
                Endpoints {
                    issuer: d.issuer,
                    authorization_endpoint: d.authorization_endpoint,
                    token_endpoint: d.token_endpoint,
                    userinfo_endpoint: d.userinfo_endpoint,
                    jwks_uri: d.jwks_uri,
                    iss_parameter: d.authorization_response_iss_parameter_supported,
                }
            }
        };
        *p.endpoints.write().await = Some((endpoints.clone(), Instant::now()));
        Ok(endpoints)
    }

    /// The provider's keys, fetched again when `kid` is unknown (key rotation).
    async fn key_for(
        &self,
        p: &Upstream,
        jwks_uri: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, FederationError> {
        let cached = p.jwks.read().await.clone();
        if let Some((set, at)) = &cached {
            if at.elapsed() < CACHE_TTL {
                if let Some(key) = pick_key(set, kid, alg) {
                    return Ok(key);
                }
                if at.elapsed() < JWKS_REFETCH {
                    return Err(FederationError::Invalid(
                        "the ID token is signed with a key the identity provider does not publish"
                            .into(),
                    ));
                }
            }
        }
        let doc = self.get_json(p, jwks_uri, None).await?;
        let set: JwkSet = serde_json::from_value(doc)
            .map_err(|_| Self::unreachable(p, "its JWKS is unusable"))?;
        let key = pick_key(&set, kid, alg);
        *p.jwks.write().await = Some((set, Instant::now()));
        key.ok_or_else(|| {
            FederationError::Invalid(
                "the ID token is signed with a key the identity provider does not publish".into(),
            )
        })
    }
}

/// The verification key for `kid` (or the only fitting key when the token names
/// none); never a symmetric or encryption key.
fn pick_key(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let usable = |k: &&Jwk| {
        !matches!(&k.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature)
            && !matches!(
                k.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_)
            )
            && k.common
                .key_algorithm
                .is_none_or(|a| shared::jwk::signing_algorithm(a) == Some(alg))
    };
    let candidates: Vec<&Jwk> = set
        .keys
        .iter()
        .filter(usable)
        .filter(|k| match kid {
            Some(kid) => k.common.key_id.as_deref() == Some(kid),
            None => true,
        })
        .collect();
    match candidates.as_slice() {
        [one] => DecodingKey::from_jwk(one).ok(),
        _ => None,
    }
}

/// The answer's JSON, read up to [`MAX_JSON_BYTES`]; `None` when it is longer,
/// breaks off or is not that JSON.
async fn read_json<T: serde::de::DeserializeOwned>(mut resp: reqwest::Response) -> Option<T> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_JSON_BYTES as u64)
    {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if body.len() + chunk.len() > MAX_JSON_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).ok()
}

/// A discovered endpoint must be as safe as a configured one (https, or plain
/// http on a loopback address only).
fn check_discovered(p: &Upstream, name: &str, url: &str) -> Result<(), FederationError> {
    crate::settings::identity_providers::check_url(name, url)
        .map_err(|e| Federation::unreachable(p, format!("its discovery document is unusable: {e}")))
}

fn describe_http_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "it did not answer in time".into()
    } else if e.is_connect() {
        "the connection failed".into()
    } else {
        "the request failed".into()
    }
}

/// Where the browser goes next: the provider's authorization endpoint, and the
/// browser-binding cookie value when this browser had none.
pub struct Started {
    pub location: String,
    pub new_binding: Option<String>,
}

/// Starts a sign-in at provider `idp_id` for the (already validated) MCP
/// authorization request `params`.
pub async fn start(
    state: &AppState,
    idp_id: &str,
    params: &AuthorizeParams,
    force_login: bool,
    binding: Option<String>,
    ip: IpAddr,
) -> Result<Started, FederationError> {
    let fed = &state.federation;
    let p = fed.provider(idp_id)?;
    let admitted = match state.limits.check_upstream_start(ip).await {
        Ok(()) => Ok(()),
        Err(super::ServiceError::RateLimited { .. })
        | Err(super::ServiceError::TemporarilyUnavailable { .. }) => {
            Err(FederationError::Throttled)
        }
        Err(e) => Err(FederationError::Internal(e.to_string())),
    };
    let endpoints = match admitted {
        Ok(()) => fed.endpoints(p).await,
        Err(e) => Err(e),
    };
    let endpoints = match endpoints {
        Ok(e) => e,
        Err(e) => {
            upstream_failed(state, p, Some(ip), &e).await;
            return Err(e);
        }
    };
    let (binding, new_binding) = match binding.filter(|b| b.len() >= 32) {
        Some(b) => (b, None),
        None => {
            let b = random_token(32);
            (b.clone(), Some(b))
        }
    };
    let upstream_state = random_token(32);
    let nonce = random_token(32);
    let verifier = random_token(48);
    let request =
        serde_json::to_string(params).map_err(|e| FederationError::Internal(e.to_string()))?;
    let state_hash = sha256_b64url(&upstream_state);
    let sealed = seal_verifier(state.key_encryption(), &state_hash, &verifier)?;
    let created_at = now();
    state
        .store
        .insert_upstream_login(&UpstreamLoginRecord {
            state_hash,
            idp: p.config.id.clone(),
            browser_hash: sha256_b64url(&binding),
            nonce_hash: sha256_b64url(&nonce),
            pkce_verifier: sealed,
            request,
            created_at,
            expires_at: created_at + PENDING_TTL_SECS,
        })
        .await?;
    let mut url = url::Url::parse(&endpoints.authorization_endpoint)
        .map_err(|_| Federation::unreachable(p, "its authorization endpoint is not a URL"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &p.config.client_id)
            .append_pair("redirect_uri", &p.redirect_uri)
            .append_pair("state", &upstream_state)
            .append_pair("code_challenge", &shared_pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let scopes = p.config.effective_scopes();
        if !scopes.is_empty() {
            q.append_pair("scope", &scopes);
        }
        if p.config.kind == IdpKind::Oidc {
            q.append_pair("nonce", &nonce);
        }
        if force_login {
            q.append_pair("prompt", "login");
        }
    }
    Ok(Started {
        location: url.to_string(),
        new_binding,
    })
}

fn shared_pkce_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

fn verifier_slot(state_hash: &str) -> SecretSlot {
    SecretSlot::Setting(format!("upstream_logins.pkce_verifier:{state_hash}"))
}

fn seal_verifier(
    enc: &KeyEncryption,
    state_hash: &str,
    verifier: &str,
) -> Result<String, FederationError> {
    enc.seal(&verifier_slot(state_hash), verifier)
        .map_err(|e| FederationError::Internal(e.to_string()))
}

/// What the provider sent back to `/idp/{id}/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A completed upstream sign-in: our user, and the MCP request to resume.
pub struct Completed {
    pub user: UserRecord,
    pub params: AuthorizeParams,
}

/// Who the provider says signed in, after mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUser {
    /// The upstream subject, byte for byte.
    pub subject: String,
    /// The username here: the upstream one when usable (see `usable_username`),
    /// else the verified email, else `<idp>:<subject>`.
    pub username: String,
    /// The username claim exactly as the provider sent it (what `allowed_users`
    /// matches); `None` when absent, or when it is the email and unverified.
    pub upstream_username: Option<String>,
    /// Only an email the provider vouches for (see `email_verified`).
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// The domain `allowed_email_domains` checks: the `claims.hosted_domain` claim
    /// when one is configured (Google's `hd`), else the verified email's domain.
    pub domain: Option<String>,
}

/// Completes a sign-in from the provider's callback. `binding` is this browser's
/// binding cookie value.
pub async fn complete(
    state: &AppState,
    idp_id: &str,
    callback: Callback,
    binding: Option<&str>,
    ip: IpAddr,
) -> Result<Completed, FederationError> {
    let p = state.federation.provider(idp_id)?;
    let result = verify_callback(state, p, callback, binding).await;
    let (upstream, params) = match result {
        Ok(x) => x,
        Err(e @ FederationError::UnknownSignIn(_)) => {
            // Anyone can send these, as often as they like: they spend the
            // address's login budget like a failed login, and leave no audit row.
            state.metrics.upstream_login(&p.config.id, e.outcome());
            return Err(match state.limits.check_upstream_start(ip).await {
                Err(super::ServiceError::RateLimited { .. })
                | Err(super::ServiceError::TemporarilyUnavailable { .. }) => {
                    FederationError::Throttled
                }
                _ => e,
            });
        }
        Err(e) => {
            upstream_failed(state, p, Some(ip), &e).await;
            return Err(e);
        }
    };
    let refused = Refusal {
        state,
        p,
        username: &upstream.username,
        client_id: params.client_id.as_deref(),
        ip,
    };
    if let Err(reason) = admitted(&p.config, &upstream) {
        refused.record(&reason).await;
        return Err(FederationError::Refused(format!(
            "{} signed you in as {}, but that account may not use this service ({reason}). Sign in with another account, or ask your administrator for access.",
            p.config.display_name,
            upstream.email.as_deref().unwrap_or(&upstream.username)
        )));
    }
    let role = if upstream
        .groups
        .iter()
        .any(|g| p.config.access.admin_groups.iter().any(|a| a == g))
    {
        Role::Admin
    } else {
        Role::User
    };
    let user = state
        .store
        .save_federated_user(&UserRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username: upstream.username.clone(),
            password_hash: NO_PASSWORD.into(),
            role,
            email: upstream.email.clone(),
            name: upstream.name.clone(),
            disabled: false,
            created_at: now(),
            idp: Some(p.config.id.clone()),
            idp_subject: Some(upstream.subject.clone()),
        })
        .await?;
    if user.disabled {
        refused.record("the account is disabled").await;
        return Err(FederationError::Refused(format!(
            "The account {} is disabled on this service. Ask your administrator.",
            user.username
        )));
    }
    state.metrics.upstream_login(&p.config.id, "success");
    let detail = format!("idp={} role={}", p.config.id, user.role);
    state
        .audit(
            "upstream_login",
            Some(&user.username),
            params.client_id.as_deref(),
            Some(ip.to_string()),
            &detail,
        )
        .await;
    Ok(Completed { user, params })
}

/// A user the provider authenticated whom we turn away.
struct Refusal<'a> {
    state: &'a AppState,
    p: &'a Upstream,
    username: &'a str,
    client_id: Option<&'a str>,
    ip: IpAddr,
}

impl Refusal<'_> {
    async fn record(&self, reason: &str) {
        self.state
            .metrics
            .upstream_login(&self.p.config.id, "refused");
        let detail = format!("idp={}: {reason}", self.p.config.id);
        self.state
            .audit(
                "upstream_login_refused",
                Some(self.username),
                self.client_id,
                Some(self.ip.to_string()),
                &detail,
            )
            .await;
    }
}

/// Records a failed callback or start: metrics and an audit row.
async fn upstream_failed(state: &AppState, p: &Upstream, ip: Option<IpAddr>, e: &FederationError) {
    let outcome = e.outcome();
    state.metrics.upstream_login(&p.config.id, outcome);
    let event = match outcome {
        "refused" => "upstream_login_refused",
        _ => "upstream_error",
    };
    if let FederationError::Internal(detail) = e {
        log::error!("sign-in through {}: {detail}", p.config.id);
    }
    let detail = format!("idp={}: {e}", p.config.id);
    state
        .audit(event, None, None, ip.map(|i| i.to_string()), &detail)
        .await;
}

/// The checks of the callback up to the mapped user.
async fn verify_callback(
    state: &AppState,
    p: &Upstream,
    cb: Callback,
    binding: Option<&str>,
) -> Result<(UpstreamUser, AuthorizeParams), FederationError> {
    let Some(upstream_state) = cb
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() < 512)
    else {
        return Err(FederationError::UnknownSignIn("the callback has no state"));
    };
    let state_hash = sha256_b64url(upstream_state);
    // Taken (deleted) whatever follows: a callback is good for one try.
    let pending = state
        .store
        .take_upstream_login(&state_hash)
        .await?
        .filter(|l| l.expires_at > now())
        .ok_or(FederationError::UnknownSignIn(
            "this sign-in is unknown, expired (after 10 minutes) or was already completed",
        ))?;
    if pending.idp != p.config.id {
        // A state issued for another provider: a mix-up.
        return Err(FederationError::Invalid(
            "the answer came from another identity provider than the one the sign-in started at"
                .into(),
        ));
    }
    match binding {
        Some(b) if constant_time_eq(&sha256_b64url(b), &pending.browser_hash) => {}
        _ => {
            return Err(FederationError::Invalid(
                "it was started in another browser (or its cookie is gone)".into(),
            ))
        }
    }
    let endpoints = state.federation.endpoints(p).await?;
    // RFC 9207: a callback naming another issuer comes from another provider.
    match cb.iss.as_deref() {
        Some(iss) if iss != endpoints.issuer => {
            return Err(FederationError::Invalid(format!(
                "the answer names the issuer {iss:?}, not {:?}",
                endpoints.issuer
            )))
        }
        None if endpoints.iss_parameter => {
            return Err(FederationError::Invalid(
                "the identity provider promises an iss parameter and the answer has none".into(),
            ))
        }
        _ => {}
    }
    if let Some(error) = cb.error.as_deref() {
        let detail = match cb.error_description.as_deref() {
            Some(d) if !d.is_empty() => format!("{error} ({d})"),
            _ => error.to_string(),
        };
        return Err(FederationError::Upstream {
            display_name: p.config.display_name.clone(),
            detail: shorten(&detail),
        });
    }
    let code = cb
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| FederationError::Invalid("the answer has no code".into()))?;
    let params: AuthorizeParams = serde_json::from_str(&pending.request)
        .map_err(|e| FederationError::Internal(format!("stored request: {e}")))?;
    let verifier = state
        .key_encryption()
        .open(&verifier_slot(&pending.state_hash), &pending.pkce_verifier)
        .map_err(|e| FederationError::Internal(e.to_string()))?;
    let tokens = redeem(state, p, &endpoints, code, verifier.value.expose()).await?;
    let mut claims = serde_json::Map::new();
    let mut id_subject = None;
    if p.config.kind == IdpKind::Oidc {
        let id_token = tokens.id_token.as_deref().ok_or_else(|| {
            FederationError::Invalid("the identity provider returned no ID token".into())
        })?;
        let verified = verify_id_token(state, p, &endpoints, id_token, &pending.nonce_hash).await?;
        id_subject = verified
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_owned);
        claims = verified;
    }
    if let Some(userinfo) = endpoints.userinfo_endpoint.as_deref() {
        let info = state
            .federation
            .get_json(p, userinfo, Some(&tokens.access_token))
            .await?;
        let Value::Object(info) = info else {
            return Err(Federation::unreachable(
                p,
                "its userinfo answer is not an object",
            ));
        };
        // OIDC Core §5.3.2: the userinfo `sub` must be the ID token's.
        if let Some(sub) = &id_subject {
            if info.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
                return Err(FederationError::Invalid(
                    "the userinfo answer is about another user than the ID token".into(),
                ));
            }
        }
        for (k, v) in info {
            claims.entry(k).or_insert(v);
        }
    }
    // GitHub's profile email carries no `email_verified`: its list says which
    // address is verified.
    let unverified = claims_text(&claims, &p.config.claims.email).is_none()
        || !email_verified(&p.config, &claims);
    if unverified && !p.config.emails_endpoint.is_empty() {
        let list = state
            .federation
            .get_json(p, &p.config.emails_endpoint, Some(&tokens.access_token))
            .await?;
        if let Some(email) = primary_verified_email(&list) {
            claims.insert(p.config.claims.email.clone(), Value::String(email));
            claims.insert("email_verified".into(), Value::Bool(true));
        }
    }
    let user = map_claims(&p.config, &claims).ok_or_else(|| {
        FederationError::Invalid(format!(
            "the identity provider did not say who signed in (no {:?} claim)",
            p.config.claims.subject
        ))
    })?;
    if groups_overage(&claims, &p.config.claims.groups) && !p.config.access.admin_groups.is_empty()
    {
        // Entra with too many groups names a Graph query instead of the list: the
        // user gets the user role; say why in the log.
        log::warn!(
            "{}: the token of {} lists no groups but points elsewhere for them (groups claim overage); admin_groups cannot match",
            p.config.id,
            user.username
        );
    }
    Ok((user, params))
}

/// Entra's groups overage: `_claim_names` names the groups claim (or `hasgroups`
/// is set) instead of listing the groups.
fn groups_overage(claims: &serde_json::Map<String, Value>, groups: &str) -> bool {
    !claims.contains_key(groups)
        && (claims
            .get("_claim_names")
            .and_then(Value::as_object)
            .is_some_and(|names| names.contains_key(groups))
            || claims.get("hasgroups") == Some(&Value::Bool(true)))
}

fn shorten(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

struct UpstreamTokens {
    access_token: String,
    id_token: Option<String>,
}

/// Redeems the code at the provider's token endpoint (once: the pending row is gone).
async fn redeem(
    state: &AppState,
    p: &Upstream,
    endpoints: &Endpoints,
    code: &str,
    verifier: &str,
) -> Result<UpstreamTokens, FederationError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", p.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let mut req = state
        .federation
        .http
        .post(&endpoints.token_endpoint)
        .header(reqwest::header::ACCEPT, "application/json");
    match p.config.token_endpoint_auth_method {
        TokenEndpointAuth::ClientSecretBasic => {
            // RFC 6749 §2.3.1: form-encode both before Basic.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&p.config.client_id), Some(enc(p.secret.expose())));
        }
        TokenEndpointAuth::ClientSecretPost => {
            form.push(("client_id", p.config.client_id.as_str()));
            form.push(("client_secret", p.secret.expose()));
        }
    }
    let resp = req
        .form(&form)
        .send()
        .await
        .map_err(|e| Federation::unreachable(p, describe_http_error(&e)))?;
    let status = resp.status();
    let answer: TokenAnswer = read_json(resp).await.ok_or_else(|| {
        Federation::unreachable(
            p,
            format!("its token endpoint answered {status} without JSON"),
        )
    })?;
    // GitHub answers errors with 200 and an `error` member.
    if let Some(error) = answer.error {
        let detail = match answer.error_description {
            Some(d) => format!("{error} ({d})"),
            None => error,
        };
        return Err(FederationError::Upstream {
            display_name: p.config.display_name.clone(),
            detail: shorten(&format!("the code was not accepted: {detail}")),
        });
    }
    if !status.is_success() {
        return Err(Federation::unreachable(
            p,
            format!("its token endpoint answered {status}"),
        ));
    }
    let access_token = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Federation::unreachable(p, "its token answer has no access_token"))?;
    Ok(UpstreamTokens {
        access_token,
        id_token: answer.id_token,
    })
}

/// OIDC Core §3.1.3.7: signature (the provider's JWKS, asymmetric algorithms only),
/// `iss`, `aud` (our client id), `azp`, `exp`, and the `nonce` of this attempt.
async fn verify_id_token(
    state: &AppState,
    p: &Upstream,
    endpoints: &Endpoints,
    id_token: &str,
    nonce_hash: &str,
) -> Result<serde_json::Map<String, Value>, FederationError> {
    let invalid = |why: &str| FederationError::Invalid(format!("the ID token {why}"));
    let header = jsonwebtoken::decode_header(id_token).map_err(|_| invalid("is malformed"))?;
    let alg = header.alg;
    if !matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(invalid("uses an algorithm we do not accept"));
    }
    let jwks_uri = endpoints
        .jwks_uri
        .as_deref()
        .ok_or_else(|| Federation::unreachable(p, "it publishes no jwks_uri"))?;
    let key = state
        .federation
        .key_for(p, jwks_uri, header.kid.as_deref(), alg)
        .await?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[&endpoints.issuer]);
    validation.set_audience(&[&p.config.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(id_token, &key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidIssuer => invalid("was issued by another issuer"),
                ErrorKind::InvalidAudience => invalid("is meant for another client"),
                ErrorKind::ExpiredSignature => invalid("has expired"),
                ErrorKind::InvalidSignature => invalid("has a bad signature"),
                _ => invalid("is not valid"),
            }
        })?;
    let claims = data.claims;
    // Several audiences: `azp` must name us (OIDC Core §3.1.3.7 items 4-5).
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != p.config.client_id => {
            return Err(invalid("is meant for another client (azp)"))
        }
        None if several => return Err(invalid("has several audiences and no azp")),
        _ => {}
    }
    let nonce = claims
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("has no nonce"))?;
    if !constant_time_eq(&sha256_b64url(nonce), nonce_hash) {
        return Err(invalid("carries another sign-in's nonce"));
    }
    Ok(claims)
}

/// A claim as text: strings as they are (without surrounding blanks), numbers
/// (GitHub's `id`) in decimal.
fn claims_text(claims: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A claim exactly as the provider sent it: identifiers (the subject, the
/// username the allow-list checks) are compared byte for byte, so that `" abc"`
/// is not `"abc"`.
fn claims_raw(claims: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether the provider vouches for the email: `email_verified` true (or
/// `"true"`), or absent when the provider's entry sets
/// `claims.assume_email_verified`. An explicit `false` always wins.
fn email_verified(
    config: &IdentityProviderConfig,
    claims: &serde_json::Map<String, Value>,
) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        None => config.claims.assume_email_verified,
        Some(_) => false,
    }
}

/// A username a provider's user may hold here: what the upstream calls them, as
/// long as it is printable, has no `:` (names with `:` are our `<idp>:` fallbacks,
/// which nobody may squat) and fits.
fn usable_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && !name.contains(':')
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// GitHub's `/user/emails`: the primary, verified address.
fn primary_verified_email(list: &Value) -> Option<String> {
    list.as_array()?
        .iter()
        .find(|e| {
            e.get("primary").and_then(Value::as_bool) == Some(true)
                && e.get("verified").and_then(Value::as_bool) == Some(true)
        })
        .and_then(|e| e.get("email").and_then(Value::as_str))
        .map(str::to_owned)
}

/// The user the claims describe; `None` without a subject.
pub fn map_claims(
    config: &IdentityProviderConfig,
    claims: &serde_json::Map<String, Value>,
) -> Option<UpstreamUser> {
    let m = &config.claims;
    let subject = claims_raw(claims, &m.subject)?;
    let verified = email_verified(config, claims);
    let email = claims_text(claims, &m.email)
        .filter(|_| verified)
        .map(|e| e.to_lowercase());
    // The allow-list sees the username claim as sent; when that claim is the
    // email, only a verified one.
    let upstream_username =
        claims_raw(claims, &m.username).filter(|_| m.username != m.email || verified);
    let username = upstream_username
        .clone()
        .filter(|u| usable_username(u))
        .or_else(|| email.clone().filter(|e| usable_username(e)))
        .unwrap_or_else(|| format!("{}:{subject}", config.id));
    let groups = match claims.get(&m.groups) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str().map(str::to_owned))
            .collect(),
        // One string is one group: a group name may hold spaces or commas.
        Some(Value::String(g)) if !g.is_empty() => vec![g.clone()],
        _ => Vec::new(),
    };
    let domain = if m.hosted_domain.trim().is_empty() {
        email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_string())
    } else {
        claims_text(claims, &m.hosted_domain).map(|d| d.to_lowercase())
    };
    Some(UpstreamUser {
        subject,
        username,
        upstream_username,
        email,
        name: claims_text(claims, &m.name),
        groups,
        domain,
    })
}

/// The allow-lists: with none set, anyone the provider authenticates; else the
/// user must be on `allowed_subjects` (the upstream subject, byte for byte), on
/// `allowed_users` (the upstream username claim exactly as sent, or the verified
/// email, case-insensitively) or belong to one of `allowed_email_domains` (see
/// [`UpstreamUser::domain`]). `Err` says why not.
pub fn admitted(config: &IdentityProviderConfig, user: &UpstreamUser) -> Result<(), String> {
    let access = &config.access;
    if access.open() {
        return Ok(());
    }
    let listed = access.allowed_users.iter().any(|u| {
        user.upstream_username.as_deref() == Some(u.as_str())
            || user
                .email
                .as_deref()
                .is_some_and(|e| u.eq_ignore_ascii_case(e))
    }) || access.allowed_subjects.contains(&user.subject);
    let domain = user.domain.as_deref().map(str::to_lowercase);
    let in_domain = domain.as_deref().is_some_and(|d| {
        access
            .allowed_email_domains
            .iter()
            .any(|a| a.trim_start_matches('@').eq_ignore_ascii_case(d))
    });
    if listed || in_domain {
        return Ok(());
    }
    Err(match (&domain, access.allowed_email_domains.is_empty()) {
        (_, true) => "not on the list of allowed users".into(),
        (Some(d), false) => format!("the email domain {d} is not allowed"),
        (None, false) if !config.claims.hosted_domain.is_empty() => {
            format!(
                "no {} claim (not an account of an allowed domain)",
                config.claims.hosted_domain
            )
        }
        (None, false) => "no verified email address".into(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::settings::identity_providers::AccessPolicy;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn claims_are_mapped_and_unverified_email_is_ignored() {
        let config = IdentityProviderConfig {
            id: "corp".into(),
            ..Default::default()
        };
        let u = map_claims(
            &config,
            &claims(serde_json::json!({
                "sub": "abc", "preferred_username": "Alice", "email": "Alice@Example.com",
                "email_verified": true, "name": "Alice A", "groups": ["mcp-admins", 3]
            })),
        )
        .unwrap();
        assert_eq!(u.subject, "abc");
        assert_eq!(u.username, "Alice");
        assert_eq!(u.email.as_deref(), Some("alice@example.com"));
        assert_eq!(u.groups, vec!["mcp-admins"]);
        let u = map_claims(
            &config,
            &claims(serde_json::json!({"sub": "x", "email": "e@x.org", "email_verified": false})),
        )
        .unwrap();
        assert_eq!(u.email, None);
        assert_eq!(u.username, "corp:x");
        assert!(map_claims(&config, &claims(serde_json::json!({"name": "n"}))).is_none());
        // GitHub: a numeric id and `login`.
        let mut gh = IdentityProviderConfig::default();
        gh.claims.subject = "id".into();
        gh.claims.username = "login".into();
        let u = map_claims(&gh, &claims(serde_json::json!({"id": 42, "login": "octo"}))).unwrap();
        assert_eq!((u.subject.as_str(), u.username.as_str()), ("42", "octo"));
    }

    #[test]
    fn allow_lists_admit_by_domain_or_user() {
        let user = |email: Option<&str>| UpstreamUser {
            subject: "s".into(),
            username: "bob".into(),
            upstream_username: Some("bob".into()),
            email: email.map(str::to_owned),
            name: None,
            groups: vec![],
            domain: email
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d.to_owned()),
        };
        let mut config = IdentityProviderConfig::default();
        assert!(admitted(&config, &user(None)).is_ok());
        config.access = AccessPolicy {
            allowed_email_domains: vec!["example.com".into()],
            ..Default::default()
        };
        assert!(admitted(&config, &user(Some("bob@example.com"))).is_ok());
        assert!(admitted(&config, &user(Some("bob@example.com.evil.org")))
            .unwrap_err()
            .contains("example.com.evil.org"));
        assert!(admitted(&config, &user(None)).is_err());
        // A username matches exactly as the provider sent it.
        config.access.allowed_users = vec!["BOB".into()];
        assert!(admitted(&config, &user(None)).is_err());
        config.access.allowed_users = vec!["bob".into()];
        assert!(admitted(&config, &user(None)).is_ok());
        // A subject, byte for byte.
        config.access.allowed_users.clear();
        config.access.allowed_subjects = vec!["s".into()];
        assert!(admitted(&config, &user(None)).is_ok());
        config.access.allowed_subjects = vec![" s".into()];
        assert!(admitted(&config, &user(None)).is_err());
    }

    #[test]
    fn allowed_users_match_only_a_verified_email_or_the_exact_username() {
        // Google-like mapping (the username is the email) with an allow-list of emails.
        let mut cfg = IdentityProviderConfig::default();
        cfg.claims.username = "email".into();
        cfg.access.allowed_users = vec!["boss@example.com".into()];
        let unverified = serde_json::json!({"sub": "attacker", "email": "boss@example.com", "email_verified": false});
        let u = map_claims(&cfg, &claims(unverified)).unwrap();
        assert_eq!(u.email, None);
        assert!(
            admitted(&cfg, &u).is_err(),
            "an unverified email is not on the list"
        );
        // No email_verified at all: unverified too...
        let silent = serde_json::json!({"sub": "attacker", "email": "boss@example.com"});
        let u = map_claims(&cfg, &claims(silent.clone())).unwrap();
        assert!(admitted(&cfg, &u).is_err());
        // ... unless the provider's entry says its emails are all verified.
        cfg.claims.assume_email_verified = true;
        let u = map_claims(&cfg, &claims(silent)).unwrap();
        assert_eq!(u.email.as_deref(), Some("boss@example.com"));
        assert!(admitted(&cfg, &u).is_ok());
        let verified = serde_json::json!({"sub": "boss", "email": "Boss@Example.com", "email_verified": "true"});
        let u = map_claims(
            &IdentityProviderConfig {
                access: cfg.access.clone(),
                ..Default::default()
            },
            &claims(verified),
        )
        .unwrap();
        assert!(admitted(&cfg, &u).is_ok(), "a verified email, any case");

        // Auth0 preset (nickname, chosen by the user): no normalisation before the check.
        let mut auth0 = IdentityProviderConfig::default();
        auth0.claims.username = "nickname".into();
        auth0.access.allowed_users = vec!["alice".into()];
        for nickname in ["al ice", " alice", "Alice", "alice\u{7}"] {
            let u = map_claims(
                &auth0,
                &claims(serde_json::json!({"sub": "auth0|attacker", "nickname": nickname, "email": "x@evil.example", "email_verified": true})),
            )
            .unwrap();
            assert!(
                admitted(&auth0, &u).is_err(),
                "{nickname:?} admitted as alice"
            );
        }
        let u = map_claims(
            &auth0,
            &claims(serde_json::json!({"sub": "auth0|alice", "nickname": "alice"})),
        )
        .unwrap();
        assert!(admitted(&auth0, &u).is_ok());
    }

    #[test]
    fn unusable_usernames_fall_back_and_groups_and_subjects_are_kept_as_sent() {
        let cfg = IdentityProviderConfig {
            id: "corp".into(),
            ..Default::default()
        };
        let map = |v: Value| map_claims(&cfg, &claims(v)).unwrap();
        // Control characters only, blanks, a ':' (our fallbacks' mark): not a name here.
        for name in ["\u{7}\u{8}", "", "al ice", "github:alice", "corp:42"] {
            let u = map(serde_json::json!({"sub": "s1", "preferred_username": name}));
            assert_eq!(u.username, "corp:s1", "{name:?}");
        }
        let u = map(serde_json::json!({"sub": "s1", "preferred_username": "x:y",
            "email": "x@y.org", "email_verified": true}));
        assert_eq!(u.username, "x@y.org");
        // A string-valued groups claim is one group.
        let u = map(serde_json::json!({"sub": "s", "groups": "Friends of mcp-admins"}));
        assert_eq!(u.groups, vec!["Friends of mcp-admins"]);
        // Subjects are compared byte for byte: " abc" is not "abc".
        assert_eq!(map(serde_json::json!({"sub": " abc"})).subject, " abc");
    }

    #[test]
    fn a_hosted_domain_claim_replaces_the_email_domain() {
        let mut google = IdentityProviderConfig::default();
        google.claims.hosted_domain = "hd".into();
        google.access.allowed_email_domains = vec!["example.com".into()];
        let workspace = map_claims(
            &google,
            &claims(serde_json::json!({"sub": "1", "email": "a@example.com", "hd": "Example.com"})),
        )
        .unwrap();
        assert_eq!(workspace.domain.as_deref(), Some("example.com"));
        assert!(admitted(&google, &workspace).is_ok());
        // A consumer account with an example.com address has no `hd`.
        let consumer = map_claims(
            &google,
            &claims(serde_json::json!({"sub": "2", "email": "b@example.com"})),
        )
        .unwrap();
        assert!(admitted(&google, &consumer)
            .unwrap_err()
            .contains("no hd claim"));
    }

    #[test]
    fn keys_are_picked_by_kid_and_algorithm_never_hmac() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "oct", "kid": "h1", "k": "c2VjcmV0"}
        ]}))
        .unwrap();
        assert!(pick_key(&set, Some("r1"), Algorithm::RS256).is_some());
        assert!(
            pick_key(&set, None, Algorithm::RS256).is_some(),
            "the only fitting key"
        );
        assert!(
            pick_key(&set, Some("r1"), Algorithm::ES256).is_none(),
            "its own alg only"
        );
        assert!(pick_key(&set, Some("r2"), Algorithm::RS256).is_none());
        assert!(
            pick_key(&set, Some("h1"), Algorithm::RS256).is_none(),
            "never an HMAC key"
        );
    }

    #[test]
    fn entra_groups_overage_is_recognised() {
        let overage = claims(serde_json::json!({"sub": "s", "_claim_names": {"groups": "src1"}}));
        assert!(groups_overage(&overage, "groups"));
        assert!(groups_overage(
            &claims(serde_json::json!({"hasgroups": true})),
            "groups"
        ));
        assert!(!groups_overage(
            &claims(serde_json::json!({"groups": ["a"]})),
            "groups"
        ));
    }

    #[test]
    fn github_primary_verified_email_is_picked() {
        let list = serde_json::json!([
            {"email": "old@x.org", "primary": false, "verified": true},
            {"email": "me@x.org", "primary": true, "verified": true}
        ]);
        assert_eq!(primary_verified_email(&list).as_deref(), Some("me@x.org"));
        let unverified =
            serde_json::json!([{"email": "me@x.org", "primary": true, "verified": false}]);
        assert_eq!(primary_verified_email(&unverified), None);
    }
}
