//! Persistence behind one trait, so that handlers never see SQL. [`open`] picks
//! the implementation from the URL: `sqlite::SqliteStore` (rusqlite, statements
//! inline on the calling thread) for SQLite files, `sql::SqlStore` (sqlx `Any`)
//! for PostgreSQL (and in-memory SQLite). Both run the same schema, the same
//! statements (`queries`), row mappers (`rows`) and operations (`ops`, over the
//! small driver interface of `exec`); a store only chooses the connection and
//! the transaction. Every multi-row change is one transaction.

mod exec;
mod ops;
mod queries;
mod rows;
pub mod sql;
pub mod sqlite;

use std::sync::Arc;

use crate::domain::key_encryption::SecretSlot;
use crate::domain::keys::StoredKey;
use crate::domain::registration_policy::ClientMetadata;
use crate::domain::scope_policy::Role;

/// `auth_codes.grant_id` of a code replayed before its first redemption finished.
/// Part of the stored data: both stores must write and read the same mark.
const REPLAYED_MARK: &str = "!replayed";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database error: {0}")]
    Failed(String),
}

impl StoreError {
    /// A unique index refused the write (a name someone else holds, on either
    /// database).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(d)) => d.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether `url` names a database a store opens: PostgreSQL or SQLite.
pub fn supported_url(url: &str) -> bool {
    ["postgres://", "postgresql://", "sqlite:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// `url` as it may be shown in logs and errors: a password in it (the user
/// information's, or a `password=` parameter) replaced by `***`. The user
/// information ends at the last `@`, so that a password with an unencoded `@`,
/// `/` or `?` is still hidden whole.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _password)) => (format!("{user}:***@"), &rest[at + 1..]),
            None => (rest[..=at].to_string(), &rest[at + 1..]),
        },
        None => (String::new(), rest),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => rest.to_string(),
    };
    format!("{scheme}://{userinfo}{rest}")
}

/// Opens the store for `url`: a SQLite file on the rusqlite store, anything else
/// (PostgreSQL, in-memory SQLite) on the sqlx store. Creates the schema if needed;
/// on PostgreSQL one process at a time (see `sql::SqlStore::connect`).
pub async fn open(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    if let Some((path, create)) = sqlite::file_url(url) {
        return Ok(Arc::new(sqlite::SqliteStore::open(
            &path,
            create,
            max_connections,
        )?));
    }
    Ok(Arc::new(
        sql::SqlStore::connect(url, max_connections).await?,
    ))
}

#[derive(Clone)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub email: Option<String>,
    pub name: Option<String>,
    pub disabled: bool,
    pub created_at: i64,
    /// The identity provider the user signs in with (`None`: a local password user).
    pub idp: Option<String>,
    /// The user's subject at that identity provider.
    pub idp_subject: Option<String>,
}

impl UserRecord {
    /// Where the user comes from, for listings: `local` or `idp:<id>`.
    pub fn source(&self) -> String {
        match &self.idp {
            Some(idp) => format!("idp:{idp}"),
            None => "local".into(),
        }
    }
}

/// A sign-in in progress at an upstream identity provider (see the
/// `upstream_logins` table): only hashes of the state, browser binding and nonce.
#[derive(Clone)]
pub struct UpstreamLoginRecord {
    pub state_hash: String,
    pub idp: String,
    pub browser_hash: String,
    pub nonce_hash: String,
    /// The PKCE verifier, sealed with the key-encryption key when one is configured.
    pub pkce_verifier: String,
    /// The MCP client's authorization request, as JSON.
    pub request: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for UpstreamLoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamLoginRecord")
            .field("idp", &self.idp)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("idp", &self.idp)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client_id: String,
    pub client_name: Option<String>,
    /// SHA-256 (base64url) of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub metadata: ClientMetadata,
    pub source: ClientSource,
    pub registration_token_hash: Option<String>,
    pub can_introspect: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a client record comes from; some rules depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    /// Dynamic client registration (RFC 7591).
    Dcr,
    /// `[[clients]]` in the configuration.
    Config,
    /// The demo mode's resource-server client.
    Demo,
    /// A Client ID Metadata Document, remembered after its first authorization.
    Cimd,
}

impl ClientSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSource::Dcr => "dcr",
            ClientSource::Config => "config",
            ClientSource::Demo => "demo",
            ClientSource::Cimd => "cimd",
        }
    }

    /// The stored value; anything else is corrupt data.
    pub fn parse(raw: &str) -> StoreResult<ClientSource> {
        match raw {
            "dcr" => Ok(ClientSource::Dcr),
            "config" => Ok(ClientSource::Config),
            "demo" => Ok(ClientSource::Demo),
            "cimd" => Ok(ClientSource::Cimd),
            other => Err(StoreError::Corrupt(format!(
                "unknown client source {other:?}"
            ))),
        }
    }
}

impl std::fmt::Display for ClientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl ClientRecord {
    pub fn display_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.metadata.grant_types.iter().any(|g| g == grant)
    }
}

#[derive(Debug, Clone)]
pub struct AuthCodeRecord {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub resource: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub grant_id: Option<String>,
}

/// The outcome of redeeming a code: single use, and a replay reports the grant the
/// first redemption created so that it can be revoked.
#[derive(Debug)]
pub enum CodeRedemption {
    Fresh(AuthCodeRecord),
    Replayed(AuthCodeRecord),
    NotFound,
}

#[derive(Debug, Clone)]
pub struct GrantRecord {
    pub id: String,
    pub user_id: Option<String>,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub grant_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    pub jti: String,
    pub grant_id: Option<String>,
    pub client_id: String,
    pub user_id: Option<String>,
    pub scope: String,
    pub audience: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// What a revocation feed entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RevokedKind {
    /// Every access token of a grant (their `sid`).
    Grant,
    /// One access token (its `jti`).
    Token,
}

impl RevokedKind {
    /// The stored value; anything else is corrupt data.
    pub fn parse(raw: &str) -> StoreResult<RevokedKind> {
        match raw {
            "grant" => Ok(RevokedKind::Grant),
            "jti" => Ok(RevokedKind::Token),
            other => Err(StoreError::Corrupt(format!(
                "unknown revocation kind {other:?}"
            ))),
        }
    }
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Position in the feed (increasing in the order revocations were committed).
    pub seq: i64,
    pub kind: RevokedKind,
    /// The grant id or the `jti`.
    pub subject: String,
    /// When the last access token the entry covers expires (unix seconds).
    pub expires_at: i64,
}

/// A page of the revocation feed.
#[derive(Debug, Clone)]
pub struct RevocationPage {
    /// The position of the latest revocation.
    pub head: i64,
    /// The oldest position still stored (0 when none is); older ones were purged.
    pub oldest: i64,
    /// Entries after the requested position, in order.
    pub entries: Vec<RevocationRecord>,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id_hash: String,
    pub user_id: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at_ms: i64,
    pub event: String,
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub detail: String,
}

/// An active user grant with what the admin API shows about it.
#[derive(Debug, Clone)]
pub struct GrantSummary {
    pub grant: GrantRecord,
    pub username: String,
    pub client_name: Option<String>,
    /// `jti`s of unexpired, unrevoked access tokens.
    pub token_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UserStat {
    pub username: String,
    pub role: String,
    pub disabled: bool,
    pub active_grants: i64,
}

/// A stored secret (a signing key's private part, a kv value) to write again,
/// re-sealed: `stored` is the value that was read, `replacement` the new one.
#[derive(Clone)]
pub struct SecretUpdate {
    pub slot: SecretSlot,
    pub stored: String,
    pub replacement: String,
}

impl std::fmt::Debug for SecretUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretUpdate")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// The tokens minted by one token-endpoint call.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access: AccessTokenRecord,
    pub refresh: Option<RefreshRecord>,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    // users
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn find_user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn find_user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    async fn set_password(&self, username: &str, hash: &str, now: i64) -> StoreResult<bool>;
    /// Disabling also revokes the user's grants and sessions.
    async fn set_disabled(&self, username: &str, disabled: bool, now: i64) -> StoreResult<bool>;
    async fn find_user_by_identity(
        &self,
        idp: &str,
        subject: &str,
    ) -> StoreResult<Option<UserRecord>>;
    /// Creates the user of `user.idp` / `user.idp_subject` on first sign-in, or
    /// updates its role, email and name (and username when that name is free);
    /// returns the stored user, whose `disabled` flag is ours. A disabled user is
    /// returned as stored, with nothing written. A username held by another user
    /// falls back to `<idp>:<username>`, then `<idp>:<subject>`, then
    /// `<idp>:<user.id>`, which nobody else can hold.
    async fn save_federated_user(&self, user: &UserRecord) -> StoreResult<UserRecord>;

    // sign-ins in progress at identity providers
    async fn insert_upstream_login(&self, login: &UpstreamLoginRecord) -> StoreResult<()>;
    /// The pending sign-in of this state, removed as it is read (single use).
    async fn take_upstream_login(
        &self,
        state_hash: &str,
    ) -> StoreResult<Option<UpstreamLoginRecord>>;

    // clients
    async fn upsert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    async fn update_client_metadata(
        &self,
        client_id: &str,
        metadata: &ClientMetadata,
        now: i64,
    ) -> StoreResult<bool>;
    /// Deletes the client and revokes everything it holds.
    async fn delete_client(&self, client_id: &str, now: i64) -> StoreResult<bool>;

    // keys
    async fn list_keys(&self) -> StoreResult<Vec<StoredKey>>;
    /// Retires the active key(s) and inserts `key` as the new active one.
    async fn rotate_keys(&self, key: &StoredKey, now: i64) -> StoreResult<()>;
    /// Inserts `key` only if no key exists yet; returns whether it was inserted.
    async fn insert_first_key(&self, key: &StoredKey) -> StoreResult<bool>;

    // sessions and consent
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn find_session(&self, id_hash: &str, now: i64) -> StoreResult<Option<SessionRecord>>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
    async fn find_consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>>;
    async fn save_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: i64,
    ) -> StoreResult<()>;

    // codes and tokens
    async fn insert_code(&self, code: &AuthCodeRecord) -> StoreResult<()>;
    async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption>;
    /// Stores a new grant with its first tokens, links the code to it when given,
    /// and writes `audit` — all in one transaction. Fails with
    /// [`StoreError::Conflict`] (and stores nothing) when `code_hash` was replayed
    /// or already has a grant.
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        issued: &Issued,
        code_hash: Option<&str>,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<()>;
    async fn find_grant(&self, grant_id: &str) -> StoreResult<Option<GrantRecord>>;
    async fn find_refresh(&self, token_hash: &str) -> StoreResult<Option<RefreshRecord>>;
    /// Marks `old_hash` rotated (only if it was not yet) and stores the new tokens, in
    /// one transaction. Returns false (and stores nothing) if another request rotated
    /// it first or the grant is revoked, on any connection or replica.
    async fn rotate_refresh(&self, old_hash: &str, now: i64, issued: &Issued) -> StoreResult<bool>;
    /// Stores tokens for an existing grant without rotating (grace-window retries).
    /// Returns false (and stores nothing) if the grant is revoked, also by a
    /// revocation running at the same time on another connection or replica.
    async fn add_tokens(&self, issued: &Issued) -> StoreResult<bool>;
    async fn insert_access_token(&self, token: &AccessTokenRecord) -> StoreResult<()>;
    async fn find_access_token(&self, jti: &str) -> StoreResult<Option<AccessTokenRecord>>;
    /// Revokes one access token and records it in the revocation feed.
    async fn revoke_access_token(&self, jti: &str, now: i64) -> StoreResult<bool>;
    /// Revokes a grant, its refresh family and its access tokens, and records it in
    /// the revocation feed. With `forget_consent` the user's remembered consent for
    /// the client goes too.
    async fn revoke_grant(
        &self,
        grant_id: &str,
        now: i64,
        forget_consent: bool,
    ) -> StoreResult<bool>;

    /// At most `limit` revocation feed entries after position `after`, with the
    /// feed's head and oldest stored position, from one consistent snapshot.
    async fn revocations_after(&self, after: i64, limit: i64) -> StoreResult<RevocationPage>;

    // admin views
    async fn active_grants(&self, now: i64) -> StoreResult<Vec<GrantSummary>>;
    async fn user_stats(&self, now: i64) -> StoreResult<Vec<UserStat>>;

    // audit, settings, maintenance
    async fn audit(&self, record: &AuditRecord) -> StoreResult<()>;
    async fn list_audit(&self, limit: i64) -> StoreResult<Vec<AuditRecord>>;
    /// A cheap query for health checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Returns the stored value for `key`, storing `init` first if there is none.
    async fn get_or_init_kv(&self, key: &str, init: &str) -> StoreResult<String>;
    /// The stored value for `key`, if any.
    async fn find_kv(&self, key: &str) -> StoreResult<Option<String>>;
    /// Writes every replacement in one transaction, each only if its row still
    /// holds `stored`; if one does not, nothing is written and this fails.
    async fn replace_secrets(&self, updates: &[SecretUpdate]) -> StoreResult<()>;
    /// Deletes expired codes, sessions, tokens and revocation feed entries; returns
    /// rows removed.
    async fn purge_expired(&self, now: i64) -> StoreResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        for (url, shown) in [
            (
                "postgres://auth:s3cret@db.internal:5432/auth",
                "postgres://auth:***@db.internal:5432/auth",
            ),
            (
                "postgresql://auth:p@ss/w?rd@10.0.0.5/auth?sslmode=require",
                "postgresql://auth:***@10.0.0.5/auth?sslmode=require",
            ),
            (
                "postgres://db.internal/auth?user=auth&password=s3cret&sslmode=require",
                "postgres://db.internal/auth?user=auth&password=***&sslmode=require",
            ),
            (
                "postgres://auth@db.internal/auth",
                "postgres://auth@db.internal/auth",
            ),
            (
                "sqlite://data/auth-server.db?mode=rwc",
                "sqlite://data/auth-server.db?mode=rwc",
            ),
            ("data/auth-server.db", "data/auth-server.db"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        assert!(!redact_url("postgres://a:b%40c@h/d").contains("b%40c"));
    }

    #[test]
    fn postgres_and_sqlite_urls_are_supported() {
        assert!(supported_url("postgres://u:p@127.0.0.1:5432/db"));
        assert!(supported_url("postgresql://127.0.0.1/db"));
        assert!(supported_url("sqlite://data/a.db?mode=rwc"));
        assert!(supported_url("sqlite::memory:"));
        assert!(!supported_url("mysql://127.0.0.1/db"));
        assert!(!supported_url("data/a.db"));
    }
}
