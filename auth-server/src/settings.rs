//! Typed configuration: compiled-in defaults, then a TOML file, then `AUTH__...`
//! environment variables (see `shared::settings::load`). `Settings::validate` runs at
//! start-up and names the offending key in its message.

use serde::{Deserialize, Serialize};
use shared::Secret;
use std::path::Path;

use crate::cimd::CimdSettings;
use crate::ratelimit::RateLimitSettings;

pub mod identity_providers;

/// Dotted keys whose environment value is a comma-separated list.
pub const LIST_KEYS: &[&str] = &[
    "server.trusted_proxies",
    "oauth.resources",
    "oauth.default_scopes",
    "secrets.previous_key_files",
    "secrets.previous_keys",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub oauth: OAuthSettings,
    pub registration: RegistrationSettings,
    pub demo: DemoSettings,
    pub rate_limit: RateLimitSettings,
    pub cimd: CimdSettings,
    pub secrets: SecretsSettings,
    pub keys: KeysSettings,
    /// Pre-registered clients (`[[clients]]` tables in TOML).
    pub clients: Vec<ClientConfig>,
    pub login: LoginSettings,
    /// Upstream identity providers users sign in with (`[[identity_providers]]`).
    pub identity_providers: Vec<identity_providers::IdentityProviderConfig>,
}

/// How users sign in on the login page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginSettings {
    /// Local password login (the `users` table); false: identity providers only.
    pub password: bool,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self { password: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub listen: String,
    /// Where `GET /metrics` is served, apart from the public port: a socket address
    /// (port 0 picks a free one), or `""` / `"off"` for no metrics. Keep it on loopback
    /// or a private network: metrics reveal traffic, logins and refusals.
    pub metrics_listen: String,
    /// The issuer identifier, used byte for byte in metadata, `iss` claims and the
    /// `iss` authorization response parameter.
    pub issuer: String,
    /// Proxies whose `X-Forwarded-For` is trusted (IP addresses or CIDR ranges).
    pub trusted_proxies: Vec<String>,
    /// Maximum size of a request body (form or JSON), in bytes.
    pub max_body_bytes: usize,
    /// Worker threads; 0 means one per CPU.
    pub workers: usize,
    /// Lifetime of the login session cookie, in seconds.
    pub session_ttl_secs: i64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3001".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            issuer: "http://localhost:3001".into(),
            trusted_proxies: Vec::new(),
            max_body_bytes: 64 * 1024,
            workers: 0,
            session_ttl_secs: 8 * 3600,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// The SQLite file (parent directories are created).
    pub path: String,
    /// Optional full database URL, wins over `path` when set:
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` for PostgreSQL (several replicas can
    /// share it), or a `sqlite:` URL.
    pub url: String,
    /// Connections per process (the PostgreSQL pool size; SQLite readers).
    pub max_connections: u32,
}

/// The URL may hold a password: shown only redacted.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("path", &self.path)
            .field("url", &crate::storage::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            path: "data/auth-server.db".into(),
            url: String::new(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OAuthSettings {
    /// The resources (RFC 8707) this server may mint tokens for.
    pub resources: Vec<String>,
    /// Scopes granted when an authorization request carries no `scope`.
    pub default_scopes: Vec<String>,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub authorization_code_ttl_secs: i64,
    /// A rotated refresh token presented again within this window (concurrent retries)
    /// gets the same successor again, with a fresh access token, instead of revoking
    /// the family; after it, the family is revoked.
    pub refresh_grace_secs: i64,
    /// Issue a refresh token to clients registered for the `refresh_token` grant even
    /// without `offline_access`.
    pub refresh_for_refresh_grant_clients: bool,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self {
            resources: vec!["http://localhost:3000/mcp".into()],
            default_scopes: vec![shared::scopes::MCP_READ.into()],
            access_token_ttl_secs: 900,
            id_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            authorization_code_ttl_secs: 60,
            refresh_grace_secs: 10,
            refresh_for_refresh_grant_clients: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistrationSettings {
    /// Dynamic client registration (RFC 7591) at `/register`.
    pub enabled: bool,
    pub max_redirect_uris: usize,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_redirect_uris: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoSettings {
    /// Seeds the tutorial users and mcp-server's confidential client.
    pub enabled: bool,
    pub mcp_server_client_secret: Secret,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            mcp_server_client_secret: Secret::new("demo-mcp-server-secret"),
        }
    }
}

/// The signing keys as every replica sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KeysSettings {
    /// How often each process re-reads the signing keys from the database, in
    /// seconds: a rotation made by another replica or the CLI is used for signing
    /// here within this time (`/jwks.json` reads them on every request, so it
    /// publishes a new key at once). Retired keys stay published this much longer.
    pub refresh_secs: u64,
}

impl Default for KeysSettings {
    fn default() -> Self {
        Self { refresh_secs: 30 }
    }
}

/// The key-encryption key (KEK) that seals the signing keys' private parts and the
/// cookie key in the database (`crate::service::keys_at_rest`). A KEK is base64 of
/// 32 random bytes (`openssl rand -base64 32`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretsSettings {
    /// A file holding the current KEK.
    pub key_file: String,
    /// The current KEK itself, for containers without files (instead of `key_file`).
    pub key: Secret,
    /// Files holding earlier KEKs: stored values sealed with them still open, and
    /// `auth-server keys rewrap` re-seals them under the current one.
    pub previous_key_files: Vec<String>,
    /// Earlier KEKs themselves (instead of files).
    pub previous_keys: Vec<Secret>,
    /// Refuse to start without a KEK (production); without one, and this false,
    /// keys are stored unencrypted and the start-up log says so.
    pub required: bool,
}

impl SecretsSettings {
    pub fn kek_configured(&self) -> bool {
        !self.key_file.trim().is_empty() || !self.key.is_empty()
    }
}

/// A client registered in configuration. Confidential clients give either the
/// SHA-256 of their secret (`client_secret_sha256`, base64url, preferred) or the
/// secret itself (`client_secret`, hashed before it is stored).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    pub client_id: String,
    pub client_name: String,
    pub client_secret: Secret,
    pub client_secret_sha256: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Space-delimited scopes the client may obtain.
    pub scope: String,
    /// May call `/introspect`.
    pub can_introspect: bool,
}

impl ClientConfig {
    /// The grant types the client gets: as configured, else by its shape (a
    /// client without redirect URIs is a service client).
    pub fn effective_grant_types(&self) -> Vec<String> {
        if !self.grant_types.is_empty() {
            return self.grant_types.clone();
        }
        if self.redirect_uris.is_empty() {
            vec!["client_credentials".into()]
        } else {
            vec!["authorization_code".into(), "refresh_token".into()]
        }
    }
}

impl Settings {
    /// The grant types some client can use, as advertised in the metadata: the
    /// authorization code and refresh grants of every user-facing client, and
    /// client_credentials only when a service client is configured (the demo's
    /// resource-server client or a `[[clients]]` entry).
    pub fn grant_types_supported(&self) -> Vec<String> {
        let mut grants = vec![
            "authorization_code".to_string(),
            "refresh_token".to_string(),
        ];
        let service_client = self.demo.enabled
            || self.clients.iter().any(|c| {
                c.effective_grant_types()
                    .iter()
                    .any(|g| g == "client_credentials")
            });
        if service_client {
            grants.push("client_credentials".into());
        }
        grants
    }

    /// Defaults, then `file` (TOML), then `AUTH__SECTION__KEY` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        shared::settings::load(file, "AUTH", LIST_KEYS).map_err(|e| e.to_string())
    }

    /// The issuer with no trailing slash (the form used everywhere).
    pub fn issuer(&self) -> String {
        self.server.issuer.trim_end_matches('/').to_string()
    }

    /// Canonical forms of the configured resources.
    pub fn canonical_resources(&self) -> Vec<String> {
        self.oauth
            .resources
            .iter()
            .filter_map(|r| shared::resource::canonical_url(r).ok())
            .collect()
    }

    pub fn database_url(&self) -> String {
        if !self.database.url.is_empty() {
            return self.database.url.clone();
        }
        format!("sqlite://{}?mode=rwc", self.database.path)
    }

    /// How long after a signing key retired a token it signed may still be valid:
    /// the longest token lifetime, plus the time another replica may go on signing
    /// with it before it reloads the keys (`keys.refresh_secs`).
    pub fn key_publication_secs(&self) -> i64 {
        let refresh = i64::try_from(self.keys.refresh_secs).unwrap_or(i64::MAX);
        self.oauth
            .access_token_ttl_secs
            .max(self.oauth.id_token_ttl_secs)
            .saturating_add(refresh)
    }

    pub fn validate(&self) -> Result<(), String> {
        let issuer = url::Url::parse(&self.server.issuer)
            .map_err(|e| format!("server.issuer {:?} is not a URL: {e}", self.server.issuer))?;
        if issuer.scheme() != "https" && issuer.scheme() != "http" {
            return Err(format!(
                "server.issuer {:?} must be an http(s) URL",
                self.server.issuer
            ));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(format!(
                "server.issuer {:?} must not have a query or fragment (RFC 8414 §2)",
                self.server.issuer
            ));
        }
        if issuer.scheme() == "http"
            && !issuer
                .host()
                .is_some_and(crate::domain::redirect_uri::is_loopback_host)
        {
            log::warn!(
                "server.issuer uses plain http on a non-loopback host; use https in production"
            );
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err()
            && !self.server.listen.contains(':')
        {
            return Err(format!(
                "server.listen {:?} must be HOST:PORT",
                self.server.listen
            ));
        }
        crate::ratelimit::TrustedProxy::parse_list(&self.server.trusted_proxies)
            .map_err(|e| format!("server.trusted_proxies: {e}"))?;
        self.rate_limit.validate()?;
        if self.server.max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        if self.database.url.is_empty() && self.database.path.trim().is_empty() {
            return Err("database.path must not be empty".into());
        }
        if !self.database.url.is_empty() && !crate::storage::supported_url(&self.database.url) {
            return Err(format!(
                "database.url {} must be a postgres:// (or postgresql://) or sqlite: URL",
                crate::storage::redact_url(&self.database.url)
            ));
        }
        if !(1..=3600).contains(&self.keys.refresh_secs) {
            return Err("keys.refresh_secs must be between 1 and 3600".into());
        }
        if self.oauth.resources.is_empty() {
            return Err("oauth.resources must list at least one resource URL".into());
        }
        for r in &self.oauth.resources {
            shared::resource::canonical_url(r).map_err(|e| format!("oauth.resources: {e}"))?;
        }
        let known = crate::domain::scope_policy::known_user_scopes();
        for s in &self.oauth.default_scopes {
            if !known.contains_literal(s) {
                return Err(format!("oauth.default_scopes: unknown scope {s:?}"));
            }
        }
        let positive = [
            (
                "oauth.access_token_ttl_secs",
                self.oauth.access_token_ttl_secs,
            ),
            ("oauth.id_token_ttl_secs", self.oauth.id_token_ttl_secs),
            (
                "oauth.refresh_token_ttl_secs",
                self.oauth.refresh_token_ttl_secs,
            ),
            (
                "oauth.authorization_code_ttl_secs",
                self.oauth.authorization_code_ttl_secs,
            ),
            ("server.session_ttl_secs", self.server.session_ttl_secs),
        ];
        for (key, value) in positive {
            if value <= 0 {
                return Err(format!("{key} must be positive"));
            }
        }
        if self.oauth.refresh_grace_secs < 0 {
            return Err("oauth.refresh_grace_secs must not be negative".into());
        }
        if self.demo.enabled && self.demo.mcp_server_client_secret.expose().len() < 8 {
            return Err("demo.mcp_server_client_secret must have at least 8 characters".into());
        }
        if !self.secrets.key_file.trim().is_empty() && !self.secrets.key.is_empty() {
            return Err("set one of secrets.key_file and secrets.key, not both".into());
        }
        let previous =
            !self.secrets.previous_key_files.is_empty() || !self.secrets.previous_keys.is_empty();
        if previous && !self.secrets.kek_configured() {
            return Err(
                "secrets.previous_key_files needs the current key in secrets.key_file (or secrets.key)"
                    .into(),
            );
        }
        if self.secrets.required && !self.secrets.kek_configured() {
            return Err(
                "secrets.required is set but no key-encryption key is configured: set secrets.key_file (or secrets.key)"
                    .into(),
            );
        }
        identity_providers::validate(self)?;
        for c in &self.clients {
            if c.client_id.trim().is_empty() {
                return Err("clients: client_id must not be empty".into());
            }
            if crate::cimd::is_cimd_client_id(&c.client_id) {
                return Err(format!(
                    "clients: {:?}: an https URL client_id is reserved for metadata documents",
                    c.client_id
                ));
            }
            shared::ScopeSet::parse(&c.scope)
                .map_err(|e| format!("clients: {:?}: {e}", c.client_id))?;
            for uri in &c.redirect_uris {
                crate::domain::redirect_uri::validate_registered(uri)
                    .map_err(|e| format!("clients: {:?}: {e}", c.client_id))?;
            }
            for g in &c.grant_types {
                if !["authorization_code", "refresh_token", "client_credentials"]
                    .contains(&g.as_str())
                {
                    return Err(format!(
                        "clients: {:?}: unsupported grant type {g:?}",
                        c.client_id
                    ));
                }
            }
            let confidential = !c.client_secret.is_empty() || !c.client_secret_sha256.is_empty();
            if c.grant_types.iter().any(|g| g == "client_credentials") && !confidential {
                return Err(format!(
                    "clients: {:?}: client_credentials needs a secret",
                    c.client_id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn layers_defaults_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.toml");
        std::fs::write(
            &file,
            r#"
[server]
issuer = "https://auth.example.com"

[oauth]
access_token_ttl_secs = 300

[[clients]]
client_id = "rs"
client_secret = "a-long-secret"
grant_types = ["client_credentials"]
scope = "auth:introspect"
can_introspect = true
"#,
        )
        .unwrap();
        // Only this test sets AUTH__ variables.
        std::env::set_var(
            "AUTH__OAUTH__RESOURCES",
            "https://a.example/mcp,https://b.example/mcp",
        );
        std::env::set_var("AUTH__RATE_LIMIT__REDIS_URL", "redis://10.0.0.5:6379/1");
        std::env::set_var("AUTH__RATE_LIMIT__REDIS_FAILURE", "closed");
        let s = Settings::load(Some(&file)).unwrap();
        std::env::remove_var("AUTH__OAUTH__RESOURCES");
        std::env::remove_var("AUTH__RATE_LIMIT__REDIS_URL");
        std::env::remove_var("AUTH__RATE_LIMIT__REDIS_FAILURE");
        assert_eq!(s.rate_limit.redis_url.expose(), "redis://10.0.0.5:6379/1");
        assert_eq!(
            s.rate_limit.redis_failure,
            crate::ratelimit::RedisFailure::Closed
        );
        assert_eq!(s.rate_limit.redis_prefix, "auth-server:rl");
        assert_eq!(s.server.issuer, "https://auth.example.com");
        assert_eq!(s.server.listen, "127.0.0.1:3001");
        assert_eq!(s.oauth.access_token_ttl_secs, 300);
        assert_eq!(
            s.oauth.resources,
            vec!["https://a.example/mcp", "https://b.example/mcp"]
        );
        assert_eq!(s.clients.len(), 1);
        assert_eq!(s.clients[0].client_secret.expose(), "a-long-secret");
        assert!(s.rate_limit.enabled);
        s.validate().unwrap();
        assert!(Settings::load(Some(&dir.path().join("missing.toml"))).is_err());
    }

    #[test]
    fn the_shipped_configurations_are_valid() {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let sqlite = Settings::load(Some(&config.join("auth-server.toml"))).unwrap();
        sqlite.validate().unwrap();
        let postgres = Settings::load(Some(&config.join("auth-server.postgres.toml"))).unwrap();
        postgres.validate().unwrap();
        assert!(postgres.database_url().starts_with("postgres://"));
        assert_eq!(postgres.keys.refresh_secs, 30);
    }

    #[test]
    fn database_urls_and_key_refresh_are_checked() {
        let mut s = Settings::default();
        assert_eq!(s.keys.refresh_secs, 30);
        s.database.url = "mysql://root:hunter2@db/auth".into();
        let message = s.validate().unwrap_err();
        assert!(message.contains("database.url"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        s.database.url = "postgres://auth:hunter2@db/auth".into();
        s.validate().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        s.keys.refresh_secs = 0;
        assert!(s.validate().unwrap_err().contains("keys.refresh_secs"));
        assert_eq!(
            Settings::default().key_publication_secs(),
            900 + 30,
            "a retired key stays published while another replica may still sign with it"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut s = Settings::default();
        s.server.issuer = "not a url".into();
        assert!(s.validate().unwrap_err().contains("server.issuer"));
        let mut s = Settings::default();
        s.oauth.resources = vec!["ftp://x".into()];
        assert!(s.validate().unwrap_err().contains("oauth.resources"));
        let mut s = Settings::default();
        s.oauth.default_scopes = vec!["nope".into()];
        assert!(s.validate().unwrap_err().contains("default_scopes"));
        let mut s = Settings::default();
        s.server.trusted_proxies = vec!["10.0.0.0/8".into(), "not-an-ip".into()];
        assert!(s.validate().unwrap_err().contains("server.trusted_proxies"));
        let mut s = Settings::default();
        s.secrets.required = true;
        assert!(s.validate().unwrap_err().contains("secrets.key_file"));
        s.secrets.key_file = "/run/secrets/kek".into();
        s.validate().unwrap();
        s.secrets.key = Secret::new("also");
        assert!(s.validate().unwrap_err().contains("secrets.key"));
        let mut s = Settings::default();
        s.secrets.previous_key_files = vec!["/run/secrets/old-kek".into()];
        assert!(s
            .validate()
            .unwrap_err()
            .contains("secrets.previous_key_files"));
        let mut s = Settings::default();
        s.rate_limit.redis_url = Secret::new("rediss://:hunter2@redis.internal");
        let e = s.validate().unwrap_err();
        assert!(
            e.contains("rate_limit.redis_url") && !e.contains("hunter2"),
            "{e}"
        );
        s.rate_limit.redis_url = Secret::new("redis://127.0.0.1:6379");
        s.validate().unwrap();
        s.rate_limit.redis_prefix = "two words".into();
        assert!(s
            .validate()
            .unwrap_err()
            .contains("rate_limit.redis_prefix"));
        s.rate_limit.redis_prefix = "ok".into();
        s.rate_limit.redis_timeout_ms = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .contains("rate_limit.redis_timeout_ms"));
        // Without a URL the Redis keys are not looked at: nothing changes.
        s.rate_limit.redis_url = Secret::default();
        s.validate().unwrap();
    }
}
