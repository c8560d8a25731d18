//! The verified-token cache shared by both verifiers, and the `jti` deny-list.
//!
//! Keyed by the SHA-256 of the token (the token itself is never stored); the value is
//! the `Arc<Principal>` built when the token was verified, valid until a deadline
//! (`exp`, or min(exp, now + max TTL) for introspection). A hit is one hash, one
//! mutex-protected LRU lookup and an `Arc` clone: no signature check, no I/O, no
//! allocation.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::{Principal, VerifyError};

/// SHA-256 of a bearer token: the cache key.
pub type TokenKey = [u8; 32];

pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry {
    principal: Arc<Principal>,
    /// Unix seconds; the entry is served while `now < valid_until`.
    valid_until: i64,
}

struct Inner {
    entries: LruCache<TokenKey, Entry>,
    /// Denied `jti` → unix seconds until which it stays denied.
    denied: LruCache<String, i64>,
}

pub struct TokenCache {
    inner: Mutex<Inner>,
}

impl TokenCache {
    /// `max_entries` bounds both the token cache and the deny-list (0 is treated as 1).
    pub fn new(max_entries: usize) -> Self {
        let cap = NonZeroUsize::new(max_entries).unwrap_or(NonZeroUsize::MIN);
        TokenCache {
            inner: Mutex::new(Inner {
                entries: LruCache::new(cap),
                denied: LruCache::new(cap),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the LRU half-updated in a way
        // that matters for correctness (entries are immutable), so recover.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached principal for this token, if it was verified before and its entry
    /// is still valid at `now`.
    pub fn get(&self, key: &TokenKey, now: i64) -> Option<Arc<Principal>> {
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some(entry) if now < entry.valid_until => Some(entry.principal.clone()),
            Some(_) => {
                inner.entries.pop(key);
                None
            }
            None => None,
        }
    }

    /// Records a freshly verified token. Refuses (`Inactive`) when its `jti` is on the
    /// deny-list; the check and the insert happen under one lock, so a concurrent
    /// [`deny`](Self::deny) cannot be undone by a verification in flight. A
    /// `valid_until` not after `now` is not cached (but the principal is still fine).
    pub fn admit(
        &self,
        key: TokenKey,
        principal: Arc<Principal>,
        valid_until: i64,
        now: i64,
    ) -> Result<(), VerifyError> {
        let mut inner = self.lock();
        if let Some(jti) = principal.token_id.as_deref() {
            if let Some(&until) = inner.denied.peek(jti) {
                if now <= until {
                    return Err(VerifyError::Inactive);
                }
                inner.denied.pop(jti);
            }
        }
        if valid_until > now {
            inner.entries.put(
                key,
                Entry {
                    principal,
                    valid_until,
                },
            );
        }
        Ok(())
    }

    /// Denies `jti` until `until` (unix seconds) and evicts every cached entry
    /// carrying it.
    pub fn deny(&self, jti: &str, until: i64, now: i64) {
        let mut inner = self.lock();
        let doomed: Vec<TokenKey> = inner
            .entries
            .iter()
            .filter(|(_, e)| e.principal.token_id.as_deref() == Some(jti) || e.valid_until <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in doomed {
            inner.entries.pop(&k);
        }
        // Drop expired denials first so they are not what the bound evicts.
        let expired: Vec<String> = inner
            .denied
            .iter()
            .filter(|(_, &u)| u < now)
            .map(|(j, _)| j.clone())
            .collect();
        for j in expired {
            inner.denied.pop(&j);
        }
        let until = inner.denied.peek(jti).map_or(until, |&old| old.max(until));
        inner.denied.put(jti.to_string(), until);
    }

    pub fn is_denied(&self, jti: &str, now: i64) -> bool {
        self.lock()
            .denied
            .peek(jti)
            .is_some_and(|&until| now <= until)
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn principal(jti: &str) -> Arc<Principal> {
        Arc::new(Principal {
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
            grant_id: None,
        })
    }

    #[test]
    fn hit_until_deadline_then_miss() {
        let c = TokenCache::new(10);
        let k = token_key("t1");
        c.admit(k, principal("j1"), 100, 10).unwrap();
        let hit = c.get(&k, 99).unwrap();
        assert_eq!(hit.subject, "s");
        assert!(c.get(&k, 100).is_none());
        assert!(c.is_empty(), "expired entry is dropped");
        assert!(c.get(&token_key("t2"), 10).is_none());
    }

    #[test]
    fn key_is_sha256_not_the_token() {
        assert_eq!(token_key("abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn bounded_lru() {
        let c = TokenCache::new(2);
        for t in ["a", "b", "c"] {
            c.admit(token_key(t), principal(t), 100, 0).unwrap();
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(&token_key("a"), 1).is_none());
        assert!(c.get(&token_key("c"), 1).is_some());
    }

    #[test]
    fn deny_evicts_and_refuses_until_expiry() {
        let c = TokenCache::new(10);
        c.admit(token_key("a"), principal("j1"), 100, 0).unwrap();
        c.admit(token_key("b"), principal("j2"), 100, 0).unwrap();
        c.deny("j1", 100, 1);
        assert!(c.get(&token_key("a"), 2).is_none());
        assert!(c.get(&token_key("b"), 2).is_some());
        assert!(c.is_denied("j1", 50));
        assert_eq!(
            c.admit(token_key("a"), principal("j1"), 100, 3),
            Err(VerifyError::Inactive)
        );
        // After the denial's deadline the jti is harmless (the token has expired anyway).
        assert!(!c.is_denied("j1", 101));
        assert!(c.admit(token_key("a"), principal("j1"), 200, 101).is_ok());
    }

    #[test]
    fn not_cached_when_deadline_passed() {
        let c = TokenCache::new(10);
        c.admit(token_key("a"), principal("j"), 5, 5).unwrap();
        assert!(c.is_empty());
    }
}
