//! The state every flow works on: settings, storage, the signing keys, the cookie
//! key, the CIMD resolver, rate limits, metrics and trusted proxies. Built by
//! `crate::app` at start-up; handlers reach it through `web::Data<AppState>`.

use std::sync::{Arc, RwLock};

use actix_web::cookie::Key;

use crate::cimd::CimdResolver;
use crate::domain::key_encryption::KeyEncryption;
use crate::domain::keys::KeyRing;
use crate::domain::now;
use crate::domain::refresh_chain::SuccessorKey;
use crate::ratelimit::TrustedProxy;
use crate::settings::Settings;
use crate::storage::{AuditRecord, Store};

use super::limits::Limits;
use super::login_delay::LoginDelay;
use super::metrics::Metrics;
use super::{ServiceError, ServiceResult};

pub struct AppState {
    pub settings: Settings,
    pub issuer: String,
    /// Canonical configured resources.
    pub resources: Vec<String>,
    pub store: Arc<dyn Store>,
    keys: RwLock<Arc<KeyRing>>,
    /// Opens the stored private keys when the ring is rebuilt.
    key_encryption: KeyEncryption,
    /// Seals the session and CSRF cookies (the cookie crate's private jar).
    pub cookie_key: Key,
    pub cookie_secure: bool,
    /// Derives the successor of a rotated refresh token (`domain::refresh_chain`).
    pub refresh_successors: SuccessorKey,
    /// Resolves Client ID Metadata Documents; `None` when CIMD is off.
    pub cimd: Option<CimdResolver>,
    pub trusted_proxies: Vec<TrustedProxy>,
    pub limits: Limits,
    /// The response-time floor of refused logins.
    pub login_delay: LoginDelay,
    pub metrics: Arc<Metrics>,
    /// This database's revocation feed epoch, read on first use.
    pub revocation_epoch: tokio::sync::OnceCell<String>,
    /// The upstream identity providers (none configured: an empty list).
    pub federation: super::federation::Federation,
}

impl AppState {
    /// `cookie_secret` is the stored random master secret: the cookie jar's keys
    /// and the refresh-successor key are derived from it; `key_encryption` opens
    /// stored private keys when they change.
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        ring: KeyRing,
        key_encryption: KeyEncryption,
        cookie_secret: &[u8],
    ) -> anyhow::Result<AppState> {
        if cookie_secret.len() < 32 {
            anyhow::bail!("the stored cookie key is shorter than 32 bytes");
        }
        let cimd = if settings.cimd.enabled {
            Some(CimdResolver::new(&settings.cimd).map_err(|e| anyhow::anyhow!("cimd: {e}"))?)
        } else {
            None
        };
        let trusted_proxies = TrustedProxy::parse_list(&settings.server.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?;
        let refresh_successors = SuccessorKey::derive(cookie_secret)
            .ok_or_else(|| anyhow::anyhow!("deriving the refresh-token key failed"))?;
        let metrics =
            Arc::new(Metrics::new().map_err(|e| anyhow::anyhow!("registering metrics: {e}"))?);
        let issuer = settings.issuer();
        let limits = Limits::new(&settings, metrics.clone(), cookie_secret)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let federation = super::federation::Federation::new(&settings)?;
        Ok(AppState {
            resources: settings.canonical_resources(),
            cookie_secure: issuer.starts_with("https://"),
            issuer,
            limits,
            login_delay: LoginDelay::default(),
            metrics,
            settings,
            store,
            keys: RwLock::new(Arc::new(ring)),
            key_encryption,
            cookie_key: Key::derive_from(cookie_secret),
            refresh_successors,
            cimd,
            trusted_proxies,
            revocation_epoch: tokio::sync::OnceCell::new(),
            federation,
        })
    }

    /// Seals and opens secrets stored in the database (under the KEK, when one is
    /// configured).
    pub fn key_encryption(&self) -> &KeyEncryption {
        &self.key_encryption
    }

    pub fn ring(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// How long retired keys stay published: the longest lifetime of anything we
    /// sign, plus the time another replica may still sign with a retired key.
    pub fn max_token_ttl(&self) -> i64 {
        self.settings.key_publication_secs()
    }

    /// Re-reads the keys from storage (after `keys rotate` in another process or
    /// replica). The ring is only rebuilt when the stored keys changed: `/jwks.json`
    /// calls this on every request, the maintenance loop every `keys.refresh_secs`,
    /// and a rebuild re-parses every private key.
    pub async fn reload_keys(&self) -> ServiceResult<Arc<KeyRing>> {
        let stored = self.store.list_keys().await?;
        let current = self.ring();
        if current.same_keys(&stored, now(), self.max_token_ttl()) {
            return Ok(current);
        }
        let opened = super::keys_at_rest::open_keys(&self.key_encryption, &stored)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let ring = KeyRing::from_stored(&opened, now(), self.max_token_ttl())
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let ring = Arc::new(ring);
        match self.keys.write() {
            Ok(mut g) => *g = ring.clone(),
            Err(poisoned) => *poisoned.into_inner() = ring.clone(),
        }
        Ok(ring)
    }

    /// Writes an audit row; a failure is logged, never shown to the user.
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

    /// The audience for a new grant: the requested resource (which must be
    /// configured) or the single / first configured one.
    pub fn resolve_resource(&self, requested: Option<&str>) -> ServiceResult<String> {
        match requested.filter(|r| !r.is_empty()) {
            Some(raw) => {
                let canonical = shared::resource::canonical_url(raw)
                    .map_err(|e| ServiceError::InvalidTarget(e.to_string()))?;
                if self.resources.contains(&canonical) {
                    Ok(canonical)
                } else {
                    Err(ServiceError::InvalidTarget(format!(
                        "resource {raw:?} is not served by this authorization server"
                    )))
                }
            }
            None => self
                .resources
                .first()
                .cloned()
                .ok_or_else(|| ServiceError::InvalidTarget("no resource is configured".into())),
        }
    }

    /// A token request may repeat the resource its grant is bound to, never name
    /// another one. `bound_by` names where the binding came from.
    pub fn ensure_bound_resource(
        &self,
        requested: Option<&str>,
        bound: &str,
        bound_by: &str,
    ) -> ServiceResult<()> {
        let Some(requested) = requested.filter(|r| !r.is_empty()) else {
            return Ok(());
        };
        if self.resolve_resource(Some(requested))? != bound {
            return Err(ServiceError::InvalidTarget(format!(
                "resource differs from {bound_by}"
            )));
        }
        Ok(())
    }
}
