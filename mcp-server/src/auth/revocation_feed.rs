//! Following the AS's revocation feed, so that a grant or token revoked at the AS
//! is refused here before it expires, even while its verification sits in the
//! verified-token cache. No request waits for the AS: a background task polls
//! `GET <revocation_feed_endpoint>?since=<cursor>` (our auth-server's extension,
//! read with this server's client credentials) every `auth.revocation_poll_secs`
//! and keeps the revoked grant ids (`sid`) and token ids (`jti`) in memory until the
//! tokens they cover have expired. [`FeedCheckedVerifier`] puts that list in front
//! of the configured verifier.
//!
//! When the feed is unreachable the server keeps serving with what it knows (the
//! outage is logged, counted and shown by `/readyz`) and catches up from its cursor
//! when the feed returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderValue;
use serde::Deserialize;
use shared::metadata::AuthorizationServerMetadata;
use shared::metrics::CounterVec;

use super::discovery::send_for_json;
use super::introspection::basic_auth_header;
use super::settings::AuthSettings;
use super::{unix_now, Principal, TokenVerifier, VerifyError};

/// Largest feed page we read (the AS sends at most 1000 entries per page).
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The feed endpoint to follow, if any: `auth.revocation_feed_endpoint`, else the
/// metadata's `revocation_feed_endpoint`. Followed when `auth.revocation_feed` is
/// true, or unset with client credentials configured; an error when it is forced on
/// and no endpoint is known.
pub fn endpoint(
    settings: &AuthSettings,
    metadata: Option<&AuthorizationServerMetadata>,
) -> Result<Option<String>, String> {
    let known = settings
        .revocation_feed_endpoint
        .clone()
        .or_else(|| metadata.and_then(|m| m.revocation_feed_endpoint.clone()));
    match (settings.revocation_feed, known) {
        (Some(false), _) => Ok(None),
        (Some(true), None) => Err(
            "auth.revocation_feed is true but the AS metadata has no revocation_feed_endpoint; set auth.revocation_feed_endpoint"
                .into(),
        ),
        (Some(true), Some(url)) => Ok(Some(url)),
        (None, Some(url)) if settings.has_client_credentials() => Ok(Some(url)),
        (None, Some(url)) => {
            log::warn!(
                "the AS offers a revocation feed at {url}, but auth.client_id/client_secret are not set: revoked tokens stay valid here until they expire"
            );
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// One feed entry as the AS sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct FeedEntry {
    pub id: String,
    /// Unix seconds after which the tokens it covers have expired.
    pub exp: i64,
}

/// A feed page as the AS sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct FeedPage {
    pub cursor: String,
    #[serde(default)]
    pub more: bool,
    #[serde(default)]
    pub grants: Vec<FeedEntry>,
    #[serde(default)]
    pub jtis: Vec<FeedEntry>,
}

/// Revoked grant ids and token ids, each until the tokens it covers have expired
/// (plus the clock-skew leeway, which keeps such tokens valid a little longer).
#[derive(Default)]
pub struct RevokedSet {
    /// False until the first entry: the per-request check is then one atomic load.
    any: AtomicBool,
    inner: RwLock<Revoked>,
}

#[derive(Default)]
struct Revoked {
    grants: HashMap<String, i64>,
    jtis: HashMap<String, i64>,
}

fn extend(map: &mut HashMap<String, i64>, id: &str, until: i64) {
    let entry = map.entry(id.to_string()).or_insert(until);
    *entry = (*entry).max(until);
}

impl RevokedSet {
    /// Whether the feed revoked `principal`'s token or its grant.
    pub fn covers(&self, principal: &Principal, now: i64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let listed = |map: &HashMap<String, i64>, id: Option<&str>| {
            id.and_then(|id| map.get(id))
                .is_some_and(|&until| now <= until)
        };
        listed(&inner.grants, principal.grant_id.as_deref())
            || listed(&inner.jtis, principal.token_id.as_deref())
    }

    /// Adds a page's entries, each kept until its `exp` + `leeway`, and forgets
    /// entries whose tokens have expired. Returns the sizes of both lists.
    fn merge(&self, page: &FeedPage, leeway: i64, now: i64) -> (usize, usize) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for g in &page.grants {
            extend(&mut inner.grants, &g.id, g.exp.saturating_add(leeway));
        }
        for j in &page.jtis {
            extend(&mut inner.jtis, &j.id, j.exp.saturating_add(leeway));
        }
        inner.grants.retain(|_, until| *until >= now);
        inner.jtis.retain(|_, until| *until >= now);
        let sizes = (inner.grants.len(), inner.jtis.len());
        self.any.store(sizes != (0, 0), Ordering::Release);
        sizes
    }

    /// Refuses the token `jti` until `until` (a revocation made from here).
    pub fn deny_token(&self, jti: &str, until: i64) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        extend(&mut inner.jtis, jti, until);
        self.any.store(true, Ordering::Release);
    }
}

/// What `/readyz` shows about the feed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FeedStatus {
    pub endpoint: String,
    /// `"starting"` (no answer yet), `"ok"` or `"unreachable"`.
    pub state: &'static str,
    /// Unix seconds of the last successful poll.
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u64,
    pub revoked_grants: usize,
    pub revoked_tokens: usize,
}

/// The feed follower: its cursor, what it learnt, and its health.
pub struct RevocationFeed {
    endpoint: String,
    http: reqwest::Client,
    authorization: HeaderValue,
    poll_every: Duration,
    leeway: i64,
    revoked: RevokedSet,
    cursor: Mutex<Option<String>>,
    status: Mutex<FeedStatus>,
    /// `mcp_server_revocation_feed_polls_total{outcome}`.
    polls: CounterVec,
}

impl RevocationFeed {
    pub fn new(
        endpoint: String,
        http: reqwest::Client,
        settings: &AuthSettings,
        polls: CounterVec,
    ) -> Result<RevocationFeed, String> {
        let authorization = basic_auth_header(&settings.client_id, settings.client_secret.expose())
            .ok_or_else(|| {
                "auth.client_id/client_secret cannot be sent in an HTTP header".to_string()
            })?;
        Ok(RevocationFeed {
            status: Mutex::new(FeedStatus {
                endpoint: endpoint.clone(),
                state: "starting",
                ..Default::default()
            }),
            endpoint,
            http,
            authorization,
            poll_every: Duration::from_secs(settings.revocation_poll_secs.max(1)),
            leeway: i64::try_from(settings.leeway_secs).unwrap_or(600),
            revoked: RevokedSet::default(),
            cursor: Mutex::new(None),
            polls,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn revoked(&self) -> &RevokedSet {
        &self.revoked
    }

    pub fn status(&self) -> FeedStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Polls every `revocation_poll_secs` in the background, starting now, until the
    /// feed is dropped (the server stopped).
    pub fn spawn(self: &Arc<Self>) {
        let weak: Weak<RevocationFeed> = Arc::downgrade(self);
        let every = self.poll_every;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(feed) = weak.upgrade() else {
                    return;
                };
                feed.poll().await;
            }
        });
    }

    /// One poll: reads pages until the feed has no more, records the outcome.
    pub async fn poll(&self) {
        let outcome = self.catch_up().await;
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok((grants, tokens)) => {
                if status.consecutive_failures > 0 {
                    log::info!("revocation feed {} is reachable again", self.endpoint);
                }
                self.polls.inc(&["ok"]);
                status.state = "ok";
                status.last_success = Some(unix_now());
                status.last_error = None;
                status.consecutive_failures = 0;
                status.revoked_grants = grants;
                status.revoked_tokens = tokens;
            }
            Err(e) => {
                if status.consecutive_failures == 0 {
                    log::warn!(
                        "revocation feed {} unreachable ({e}); serving with the revocations known so far",
                        self.endpoint
                    );
                } else {
                    log::debug!("revocation feed {} still unreachable: {e}", self.endpoint);
                }
                self.polls.inc(&["failed"]);
                status.state = "unreachable";
                status.last_error = Some(e);
                status.consecutive_failures += 1;
            }
        }
    }

    async fn catch_up(&self) -> Result<(usize, usize), String> {
        loop {
            let page = self.fetch().await?;
            let sizes = self.revoked.merge(&page, self.leeway, unix_now());
            let more = page.more;
            *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = Some(page.cursor);
            if !more {
                return Ok(sizes);
            }
        }
    }

    async fn fetch(&self) -> Result<FeedPage, String> {
        let mut url = url::Url::parse(&self.endpoint).map_err(|e| e.to_string())?;
        let cursor = self
            .cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(cursor) = cursor {
            url.query_pairs_mut().append_pair("since", &cursor);
        }
        let request = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone());
        send_for_json(request, MAX_PAGE_BYTES).await
    }
}

/// The configured verifier with the revocation feed in front: a token the feed
/// covers is refused (`Revoked`), whether it is verified now or was cached before.
pub struct FeedCheckedVerifier {
    inner: Arc<dyn TokenVerifier>,
    feed: Arc<RevocationFeed>,
}

impl FeedCheckedVerifier {
    pub fn new(inner: Arc<dyn TokenVerifier>, feed: Arc<RevocationFeed>) -> Self {
        FeedCheckedVerifier { inner, feed }
    }
}

impl TokenVerifier for FeedCheckedVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, VerifyError>> {
        Box::pin(async move {
            let principal = self.inner.verify(token).await?;
            if self.feed.revoked.covers(&principal, unix_now()) {
                return Err(VerifyError::Revoked);
            }
            Ok(principal)
        })
    }

    /// A revoked token is no cache hit: `verify` then refuses it.
    fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        self.inner
            .cached(token)
            .filter(|p| !self.feed.revoked.covers(p, unix_now()))
    }

    fn mode(&self) -> &'static str {
        self.inner.mode()
    }

    fn key_ids(&self) -> Vec<String> {
        self.inner.key_ids()
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    fn deny_token_id(&self, token_id: &str, expires_at: i64) {
        self.feed.revoked.deny_token(token_id, expires_at);
        self.inner.deny_token_id(token_id, expires_at);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn principal(jti: &str, sid: Option<&str>) -> Principal {
        Principal {
            subject: "s".into(),
            username: None,
            name: None,
            email: None,
            roles: vec![],
            client_id: None,
            scopes: Default::default(),
            audience: vec![],
            issuer: "i".into(),
            expires_at: 100,
            token_id: Some(jti.into()),
            grant_id: sid.map(str::to_string),
        }
    }

    fn page(grants: &[(&str, i64)], jtis: &[(&str, i64)]) -> FeedPage {
        let entries = |list: &[(&str, i64)]| {
            list.iter()
                .map(|(id, exp)| FeedEntry {
                    id: id.to_string(),
                    exp: *exp,
                })
                .collect()
        };
        FeedPage {
            cursor: "c".into(),
            more: false,
            grants: entries(grants),
            jtis: entries(jtis),
        }
    }

    #[test]
    fn covers_revoked_grants_and_tokens_until_they_expire() {
        let set = RevokedSet::default();
        assert!(!set.covers(&principal("j1", Some("g1")), 10));
        assert_eq!(
            set.merge(&page(&[("g1", 100)], &[("j9", 50)]), 60, 10),
            (1, 1)
        );
        assert!(set.covers(&principal("j1", Some("g1")), 10));
        assert!(set.covers(&principal("j9", None), 10));
        assert!(!set.covers(&principal("j2", Some("g2")), 10));
        assert!(!set.covers(&principal("j2", None), 10));
        // Kept through the leeway, forgotten after it.
        assert!(set.covers(&principal("j1", Some("g1")), 160));
        assert_eq!(set.merge(&page(&[], &[]), 60, 161), (0, 0));
        assert!(!set.covers(&principal("j1", Some("g1")), 161));
    }

    #[test]
    fn the_endpoint_comes_from_settings_or_metadata() {
        let metadata = AuthorizationServerMetadata {
            revocation_feed_endpoint: Some("http://as/revocations".into()),
            ..Default::default()
        };
        let mut s = AuthSettings::default();
        // Auto: only with client credentials.
        assert_eq!(endpoint(&s, Some(&metadata)), Ok(None));
        s.client_id = "rs".into();
        s.client_secret = shared::Secret::new("x");
        assert_eq!(
            endpoint(&s, Some(&metadata)).unwrap().as_deref(),
            Some("http://as/revocations")
        );
        assert_eq!(endpoint(&s, None), Ok(None));
        s.revocation_feed = Some(false);
        assert_eq!(endpoint(&s, Some(&metadata)), Ok(None));
        s.revocation_feed = Some(true);
        assert!(endpoint(&s, None).is_err());
        s.revocation_feed_endpoint = Some("http://other/feed".into());
        assert_eq!(
            endpoint(&s, None).unwrap().as_deref(),
            Some("http://other/feed")
        );
    }
}
