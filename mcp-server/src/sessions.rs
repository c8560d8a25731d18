//! Binds each legacy MCP session to the subject that opened it. rmcp does not: a
//! session id is not authentication, so every request re-verifies its token and the
//! bridge refuses another subject on a session it did not open.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::Principal;

/// Upper bound on remembered sessions; the oldest entries are dropped beyond it (rmcp
/// would have expired them long before).
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// Opened without a token (anonymous mode); the first authenticated subject that
    /// uses it takes it over (the client signed in after a 401).
    Anonymous,
    Subject(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Allowed,
    /// Unknown or forgotten session: 404.
    Unknown,
    /// Opened by a subject, used without a token: 401.
    NeedsAuthentication,
    /// Opened by another subject: 403.
    OtherSubject,
}

#[derive(Debug, Default)]
pub struct SessionOwners {
    inner: Mutex<HashMap<String, (Owner, u64)>>,
    counter: std::sync::atomic::AtomicU64,
}

fn owner_of(principal: Option<&Principal>) -> Owner {
    match principal {
        Some(p) => Owner::Subject(p.subject.clone()),
        None => Owner::Anonymous,
    }
}

impl SessionOwners {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Owner, u64)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the owner of a freshly created session.
    pub fn record(&self, session_id: &str, principal: Option<&Principal>) {
        let seq = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, s))| *s)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(session_id.to_string(), (owner_of(principal), seq));
    }

    /// Whether `principal` may use `session_id`.
    pub fn check(&self, session_id: &str, principal: Option<&Principal>) -> Binding {
        let mut map = self.lock();
        let Some((owner, _)) = map.get_mut(session_id) else {
            return Binding::Unknown;
        };
        match (&*owner, principal) {
            (Owner::Anonymous, None) => Binding::Allowed,
            (Owner::Anonymous, Some(p)) => {
                *owner = Owner::Subject(p.subject.clone());
                Binding::Allowed
            }
            (Owner::Subject(_), None) => Binding::NeedsAuthentication,
            (Owner::Subject(s), Some(p)) if *s == p.subject => Binding::Allowed,
            (Owner::Subject(_), Some(_)) => Binding::OtherSubject,
        }
    }

    pub fn forget(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// Keeps only the sessions for which `alive` is true (called with rmcp's live set).
    pub fn retain(&self, mut alive: impl FnMut(&str) -> bool) {
        self.lock().retain(|k, _| alive(k));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str) -> Principal {
        Principal {
            subject: sub.into(),
            username: None,
            name: None,
            email: None,
            roles: vec![],
            client_id: None,
            scopes: shared::ScopeSet::new(),
            audience: vec![],
            issuer: "http://as".into(),
            expires_at: 0,
            token_id: None,
        }
    }

    #[test]
    fn sessions_are_bound_to_their_subject() {
        let s = SessionOwners::new();
        let alice = principal("alice");
        let bob = principal("bob");
        s.record("s1", Some(&alice));
        assert_eq!(s.check("s1", Some(&alice)), Binding::Allowed);
        assert_eq!(s.check("s1", Some(&bob)), Binding::OtherSubject);
        assert_eq!(s.check("s1", None), Binding::NeedsAuthentication);
        assert_eq!(s.check("nope", Some(&alice)), Binding::Unknown);
        s.forget("s1");
        assert_eq!(s.check("s1", Some(&alice)), Binding::Unknown);
    }

    #[test]
    fn anonymous_sessions_are_claimed_once() {
        let s = SessionOwners::new();
        s.record("a", None);
        assert_eq!(s.check("a", None), Binding::Allowed);
        assert_eq!(s.check("a", Some(&principal("alice"))), Binding::Allowed);
        assert_eq!(s.check("a", Some(&principal("bob"))), Binding::OtherSubject);
        assert_eq!(s.check("a", None), Binding::NeedsAuthentication);
        s.retain(|_| false);
        assert!(s.is_empty());
    }
}
