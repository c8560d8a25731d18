//! Shared application state and the few services handlers call: the key ring,
//! client lookup (stored or CIMD), client authentication, cookie signing, token
//! minting and the audit trail.

use std::sync::{Arc, RwLock};

use actix_web::HttpRequest;
use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use shared::claims::{AccessTokenClaims, Audience};
use shared::scopes::{self, ScopeSet};

use crate::domain::client_auth::{self, ClientAuthError};
use crate::domain::keys::KeyRing;
use crate::domain::registration_policy::ClientMetadata;
use crate::domain::scope_policy::Role;
use crate::domain::{now, tokens};
use crate::error::{AppError, AppResult};
use crate::settings::Settings;
use crate::storage::{AccessTokenRecord, AuditRecord, ClientRecord, Store, UserRecord};

pub struct AppState {
    pub settings: Settings,
    pub issuer: String,
    /// Canonical configured resources.
    pub resources: Vec<String>,
    pub store: Arc<dyn Store>,
    keys: RwLock<Arc<KeyRing>>,
    cookie_key: hmac::Key,
    pub cookie_secure: bool,
    pub extensions: crate::app::Extensions,
}

impl AppState {
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        ring: KeyRing,
        cookie_secret: &[u8],
        extensions: crate::app::Extensions,
    ) -> AppState {
        let issuer = settings.issuer();
        AppState {
            resources: settings.canonical_resources(),
            cookie_secure: issuer.starts_with("https://"),
            issuer,
            settings,
            store,
            keys: RwLock::new(Arc::new(ring)),
            cookie_key: hmac::Key::new(hmac::HMAC_SHA256, cookie_secret),
            extensions,
        }
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The longest lifetime of anything we sign (retired keys stay published this long).
    pub fn max_token_ttl(&self) -> i64 {
        self.settings
            .oauth
            .access_token_ttl_secs
            .max(self.settings.oauth.id_token_ttl_secs)
    }

    /// Re-reads the keys from storage (after `keys rotate` in another process). The
    /// ring is only rebuilt when the stored keys changed: `/jwks.json` calls this on
    /// every request, and a rebuild re-parses every private key.
    pub async fn reload_keys(&self) -> AppResult<Arc<KeyRing>> {
        let stored = self.store.list_keys().await?;
        let current = self.ring();
        if current.same_keys(&stored, now(), self.max_token_ttl()) {
            return Ok(current);
        }
        let ring = KeyRing::from_stored(&stored, now(), self.max_token_ttl())
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let ring = Arc::new(ring);
        match self.keys.write() {
            Ok(mut g) => *g = ring.clone(),
            Err(poisoned) => *poisoned.into_inner() = ring.clone(),
        }
        Ok(ring)
    }

    // ----- cookies and CSRF -----

    fn mac(&self, purpose: &str, value: &str) -> String {
        let tag = hmac::sign(&self.cookie_key, format!("{purpose}\0{value}").as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// `value.mac` for a signed cookie.
    pub fn sign_cookie(&self, purpose: &str, value: &str) -> String {
        format!("{value}.{}", self.mac(purpose, value))
    }

    pub fn verify_cookie(&self, purpose: &str, signed: &str) -> Option<String> {
        let (value, mac) = signed.rsplit_once('.')?;
        shared::secret::constant_time_eq(&self.mac(purpose, value), mac).then(|| value.to_string())
    }

    /// The form token bound to the CSRF cookie's value.
    pub fn csrf_token(&self, csrf_cookie: &str) -> String {
        self.mac("csrf", csrf_cookie)
    }

    pub fn check_csrf(&self, csrf_cookie: Option<&str>, form_token: &str) -> bool {
        match csrf_cookie {
            Some(c) if !c.is_empty() => {
                shared::secret::constant_time_eq(&self.csrf_token(c), form_token)
            }
            _ => false,
        }
    }

    // ----- clients -----

    /// A stored client, or for an https `client_id` the Client ID Metadata Document.
    pub async fn find_client(&self, client_id: &str) -> AppResult<Option<ClientRecord>> {
        if let Some(c) = self.store.find_client(client_id).await? {
            if c.source != "cimd" {
                return Ok(Some(c));
            }
        }
        self.extensions.resolve_cimd(client_id).await
    }

    /// Authenticates the client of a token/revoke/introspect request.
    pub async fn authenticate_client(
        &self,
        req: &HttpRequest,
        form_client_id: Option<&str>,
        form_secret: Option<&str>,
    ) -> AppResult<ClientRecord> {
        let authorization = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let basic = authorization.is_some_and(|a| client_auth::basic_credentials(a).is_some());
        let presented = client_auth::presented(authorization, form_client_id, form_secret)
            .map_err(|e| match e {
                ClientAuthError::Missing => {
                    AppError::invalid_client("client authentication is required", basic)
                }
                other => AppError::invalid_client(other.to_string(), basic),
            })?;
        let found = self
            .find_client(&presented.client_id)
            .await
            .map_err(|e| match e {
                AppError::Internal(_) => e,
                other => AppError::invalid_client(other.to_string(), basic),
            })?;
        let Some(client) = found else {
            return Err(AppError::invalid_client(
                "client authentication failed",
                basic,
            ));
        };
        client_auth::verify(&presented, client.secret_hash.as_deref())
            .map_err(|_| AppError::invalid_client("client authentication failed", basic))?;
        Ok(client)
    }

    // ----- tokens -----

    /// Mints an access token and the row that tracks it.
    pub fn mint_access(
        &self,
        client_id: &str,
        user: Option<&UserRecord>,
        scope: &ScopeSet,
        audience: &str,
        grant_id: Option<&str>,
    ) -> AppResult<(String, AccessTokenRecord)> {
        let now = now();
        let exp = now + self.settings.oauth.access_token_ttl_secs;
        let jti = shared::secret::random_token(16);
        let (sub, preferred_username, name, email, roles) = match user {
            Some(u) => (
                u.id.clone(),
                Some(u.username.clone()),
                u.name
                    .clone()
                    .filter(|_| scope.contains_literal(scopes::PROFILE)),
                u.email
                    .clone()
                    .filter(|_| scope.contains_literal(scopes::EMAIL)),
                Some(Role::parse(&u.role).unwrap_or(Role::User).claim()),
            ),
            None => (client_id.to_string(), None, None, None, None),
        };
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub,
            aud: Audience::One(audience.to_string()),
            exp,
            iat: now,
            nbf: Some(now),
            jti: jti.clone(),
            client_id: client_id.to_string(),
            scope: scope.to_string(),
            preferred_username,
            name,
            email,
            roles,
        };
        let token = tokens::mint_access_token(&self.ring(), &claims)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        Ok((
            token,
            AccessTokenRecord {
                jti,
                grant_id: grant_id.map(str::to_owned),
                client_id: client_id.to_string(),
                user_id: user.map(|u| u.id.clone()),
                scope: scope.to_string(),
                audience: audience.to_string(),
                issued_at: now,
                expires_at: exp,
                revoked_at: None,
            },
        ))
    }

    pub fn mint_id_token(
        &self,
        client_id: &str,
        user: &UserRecord,
        scope: &ScopeSet,
        auth_time: i64,
        nonce: Option<String>,
    ) -> AppResult<String> {
        let now = now();
        let claims = tokens::IdTokenClaims {
            iss: self.issuer.clone(),
            sub: user.id.clone(),
            aud: client_id.to_string(),
            exp: now + self.settings.oauth.id_token_ttl_secs,
            iat: now,
            auth_time,
            nonce,
            preferred_username: scope
                .contains_literal(scopes::PROFILE)
                .then(|| user.username.clone()),
            name: user
                .name
                .clone()
                .filter(|_| scope.contains_literal(scopes::PROFILE)),
            email: user
                .email
                .clone()
                .filter(|_| scope.contains_literal(scopes::EMAIL)),
            azp: client_id.to_string(),
        };
        tokens::mint_id_token(&self.ring(), &claims).map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Verifies one of our access tokens, including revocation. Reloads the keys
    /// once on an unknown `kid` (a rotation by another process).
    pub async fn verify_access_token(&self, token: &str) -> AppResult<AccessTokenClaims> {
        let claims = match tokens::verify_access_token(&self.ring(), token, &self.issuer) {
            Ok(c) => c,
            Err(tokens::TokenError::Invalid) if self.unknown_kid(token) => {
                let ring = self.reload_keys().await?;
                tokens::verify_access_token(&ring, token, &self.issuer)
                    .map_err(|e| AppError::unauthorized(e.to_string()))?
            }
            Err(e) => return Err(AppError::unauthorized(e.to_string())),
        };
        match self.store.find_access_token(&claims.jti).await? {
            Some(rec) if rec.revoked_at.is_none() => Ok(claims),
            Some(_) => Err(AppError::unauthorized("token has been revoked")),
            None => Err(AppError::unauthorized("token is unknown")),
        }
    }

    fn unknown_kid(&self, token: &str) -> bool {
        jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|h| h.kid)
            .is_some_and(|kid| !self.ring().verifying.contains_key(&kid))
    }

    // ----- audit -----

    pub async fn audit(
        &self,
        event: &str,
        username: Option<&str>,
        client_id: Option<&str>,
        ip: Option<String>,
        detail: &str,
    ) {
        let record = Self::audit_record(event, username, client_id, ip, detail);
        if let Err(e) = self.store.audit(&record).await {
            log::warn!("audit write failed: {e}");
        }
    }

    /// An audit row stamped now, for stores that write it inside a transaction.
    pub fn audit_record(
        event: &str,
        username: Option<&str>,
        client_id: Option<&str>,
        ip: Option<String>,
        detail: &str,
    ) -> AuditRecord {
        AuditRecord {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            event: event.to_string(),
            username: username.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
            ip,
            detail: detail.to_string(),
        }
    }

    /// The client IP, honouring `X-Forwarded-For` only from trusted proxies.
    pub fn client_ip(&self, req: &HttpRequest) -> std::net::IpAddr {
        self.extensions.client_ip(req)
    }

    /// The audience for a new grant: the requested resource (which must be
    /// configured) or the single / first configured one.
    pub fn resolve_resource(&self, requested: Option<&str>) -> Result<String, String> {
        match requested.filter(|r| !r.is_empty()) {
            Some(raw) => {
                let canonical = shared::resource::canonical_url(raw).map_err(|e| e.to_string())?;
                if self.resources.contains(&canonical) {
                    Ok(canonical)
                } else {
                    Err(format!(
                        "resource {raw:?} is not served by this authorization server"
                    ))
                }
            }
            None => self
                .resources
                .first()
                .cloned()
                .ok_or_else(|| "no resource is configured".to_string()),
        }
    }
}

/// A client record for a pre-registered or synthesised client.
pub fn client_record(
    client_id: &str,
    name: Option<String>,
    secret_hash: Option<String>,
    metadata: ClientMetadata,
    source: &str,
    can_introspect: bool,
) -> ClientRecord {
    let now = now();
    ClientRecord {
        client_id: client_id.to_string(),
        client_name: name,
        secret_hash,
        metadata,
        source: source.to_string(),
        registration_token_hash: None,
        can_introspect,
        created_at: now,
        updated_at: now,
    }
}
