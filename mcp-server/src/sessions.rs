//! Binds each legacy MCP session to the subject that opened it. rmcp does not: a
//! session id is not authentication, so every request re-verifies its token and the
//! bridge refuses another subject on a session it did not open.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::auth::Principal;
use crate::gateway::direct::DirectRoute;

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

#[derive(Debug)]
struct Entry {
    owner: Owner,
    /// Creation sequence number (the per-subject and anonymous indexes' key).
    seq: u64,
    /// When rmcp's session worker last saw activity caused by us (monotonic: a
    /// wall-clock step must not starve a session); see [`SessionOwners::touch_due`].
    touched: Instant,
    /// Gateway mode: the session's direct route to its upstream session, if any.
    route: Option<Arc<DirectRoute>>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    /// Subject → its sessions by sequence number (oldest first).
    by_subject: HashMap<String, BTreeMap<u64, String>>,
    /// Unclaimed anonymous sessions by sequence number (oldest first).
    anonymous: BTreeMap<u64, String>,
}

impl Inner {
    fn unindex(&mut self, owner: &Owner, seq: u64) {
        match owner {
            Owner::Subject(subject) => {
                if let Some(sessions) = self.by_subject.get_mut(subject) {
                    sessions.remove(&seq);
                    if sessions.is_empty() {
                        self.by_subject.remove(subject);
                    }
                }
            }
            Owner::Anonymous => {
                self.anonymous.remove(&seq);
            }
        }
    }

    fn remove(&mut self, session_id: &str) {
        if let Some(entry) = self.by_id.remove(session_id) {
            self.unindex(&entry.owner, entry.seq);
        }
    }

    fn index(&mut self, subject: &str, seq: u64, session_id: &str) {
        self.by_subject
            .entry(subject.to_string())
            .or_default()
            .insert(seq, session_id.to_string());
    }
}

/// Unclaimed anonymous sessions kept by default (anonymous mode): without a subject
/// there is no per-subject bound, so this one stops a client without a token from
/// opening sessions (each one a task in rmcp) without limit.
pub const DEFAULT_MAX_ANONYMOUS_SESSIONS: usize = 1000;

#[derive(Debug)]
pub struct SessionOwners {
    inner: Mutex<Inner>,
    counter: std::sync::atomic::AtomicU64,
    max_anonymous: usize,
}

impl Default for SessionOwners {
    fn default() -> Self {
        Self::with_anonymous_limit(DEFAULT_MAX_ANONYMOUS_SESSIONS)
    }
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

    /// At most `max_anonymous` unclaimed anonymous sessions; opening more closes the
    /// oldest (0 is treated as 1).
    pub fn with_anonymous_limit(max_anonymous: usize) -> Self {
        SessionOwners {
            inner: Mutex::new(Inner::default()),
            counter: std::sync::atomic::AtomicU64::new(0),
            max_anonymous: max_anonymous.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the owner of a freshly created session. Returns the sessions to close:
    /// a subject keeps at most `per_subject` sessions, the oldest go first (clients
    /// that never send DELETE cannot pile up sessions); unclaimed anonymous sessions
    /// are bounded the same way by the anonymous limit.
    pub fn record(
        &self,
        session_id: &str,
        principal: Option<&Principal>,
        per_subject: usize,
    ) -> Vec<String> {
        let seq = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let owner = owner_of(principal);
        let mut inner = self.lock();
        let mut evicted = Vec::new();
        if inner.by_id.len() >= MAX_SESSIONS {
            if let Some(oldest) = inner
                .by_id
                .iter()
                .min_by_key(|(_, entry)| entry.seq)
                .map(|(k, _)| k.clone())
            {
                inner.remove(&oldest);
                evicted.push(oldest);
            }
        }
        let excess: Vec<String> = match &owner {
            Owner::Subject(subject) => {
                inner.index(subject, seq, session_id);
                inner
                    .by_subject
                    .get(subject)
                    .map(|sessions| {
                        let over = sessions.len().saturating_sub(per_subject.max(1));
                        sessions.values().take(over).cloned().collect()
                    })
                    .unwrap_or_default()
            }
            Owner::Anonymous => {
                inner.anonymous.insert(seq, session_id.to_string());
                let over = inner.anonymous.len().saturating_sub(self.max_anonymous);
                inner.anonymous.values().take(over).cloned().collect()
            }
        };
        for id in excess {
            inner.remove(&id);
            evicted.push(id);
        }
        let entry = Entry {
            owner,
            seq,
            touched: Instant::now(),
            route: None,
        };
        inner.by_id.insert(session_id.to_string(), entry);
        evicted
    }

    /// Whether a request answered without rmcp should also reset rmcp's idle timer
    /// for `session_id` (at most once per `every` per session); when true the touch
    /// is recorded as done at `now`.
    pub fn touch_due(&self, session_id: &str, now: Instant, every: Duration) -> bool {
        let mut inner = self.lock();
        match inner.by_id.get_mut(session_id) {
            Some(entry) if now.saturating_duration_since(entry.touched) >= every => {
                entry.touched = now;
                true
            }
            _ => false,
        }
    }

    /// Gives `session_id` (already recorded) its direct route to the upstream.
    pub fn attach_route(&self, session_id: &str, route: Arc<DirectRoute>) {
        if let Some(entry) = self.lock().by_id.get_mut(session_id) {
            entry.route = Some(route);
        }
    }

    /// The direct route of `session_id`, if it has one.
    pub fn route(&self, session_id: &str) -> Option<Arc<DirectRoute>> {
        self.lock().by_id.get(session_id)?.route.clone()
    }

    /// Whether `principal` may use `session_id`.
    pub fn check(&self, session_id: &str, principal: Option<&Principal>) -> Binding {
        let mut inner = self.lock();
        // Decided on a borrow (this runs on every session request); only the claim of
        // an anonymous session by a signed-in subject changes anything.
        let Some(entry) = inner.by_id.get_mut(session_id) else {
            return Binding::Unknown;
        };
        let claimant = match (&entry.owner, principal) {
            (Owner::Anonymous, None) => return Binding::Allowed,
            (Owner::Subject(_), None) => return Binding::NeedsAuthentication,
            (Owner::Subject(s), Some(p)) if *s == p.subject => return Binding::Allowed,
            (Owner::Subject(_), Some(_)) => return Binding::OtherSubject,
            (Owner::Anonymous, Some(p)) => p,
        };
        entry.owner = Owner::Subject(claimant.subject.clone());
        let seq = entry.seq;
        inner.unindex(&Owner::Anonymous, seq);
        inner.index(&claimant.subject, seq, session_id);
        Binding::Allowed
    }

    pub fn forget(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// Keeps only the sessions for which `alive` is true (called with rmcp's live set).
    pub fn retain(&self, mut alive: impl FnMut(&str) -> bool) {
        let mut inner = self.lock();
        let dead: Vec<String> = inner.by_id.keys().filter(|k| !alive(k)).cloned().collect();
        for id in dead {
            inner.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ids(&self) -> Vec<String> {
        self.lock().by_id.keys().cloned().collect()
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
            grant_id: None,
        }
    }

    #[test]
    fn sessions_are_bound_to_their_subject() {
        let s = SessionOwners::new();
        let alice = principal("alice");
        let bob = principal("bob");
        assert!(s.record("s1", Some(&alice), 10).is_empty());
        assert_eq!(s.check("s1", Some(&alice)), Binding::Allowed);
        assert_eq!(s.check("s1", Some(&bob)), Binding::OtherSubject);
        assert_eq!(s.check("s1", None), Binding::NeedsAuthentication);
        assert_eq!(s.check("nope", Some(&alice)), Binding::Unknown);
        s.forget("s1");
        assert_eq!(s.check("s1", Some(&alice)), Binding::Unknown);
    }

    #[test]
    fn rmcp_is_touched_at_most_once_per_interval() {
        let s = SessionOwners::new();
        s.record("s1", Some(&principal("alice")), 10);
        let now = Instant::now();
        let secs = Duration::from_secs;
        let every = secs(60);
        assert!(!s.touch_due("s1", now, every), "just recorded");
        assert!(s.touch_due("s1", now + secs(60), every));
        assert!(!s.touch_due("s1", now + secs(61), every));
        assert!(s.touch_due("s1", now + secs(125), every));
        // An earlier instant (never with a monotonic clock) touches nothing.
        assert!(!s.touch_due("s1", now, every));
        assert!(!s.touch_due("unknown", now + secs(1000), every));
        s.forget("s1");
        assert!(!s.touch_due("s1", now + secs(1000), every));
    }

    #[test]
    fn anonymous_sessions_are_claimed_once() {
        let s = SessionOwners::new();
        s.record("a", None, 10);
        assert_eq!(s.check("a", None), Binding::Allowed);
        assert_eq!(s.check("a", Some(&principal("alice"))), Binding::Allowed);
        assert_eq!(s.check("a", Some(&principal("bob"))), Binding::OtherSubject);
        assert_eq!(s.check("a", None), Binding::NeedsAuthentication);
        s.retain(|_| false);
        assert!(s.is_empty());
    }

    #[test]
    fn unclaimed_anonymous_sessions_are_bounded() {
        let s = SessionOwners::with_anonymous_limit(2);
        assert!(s.record("x1", None, 32).is_empty());
        assert!(s.record("x2", None, 32).is_empty());
        assert_eq!(s.record("x3", None, 32), vec!["x1".to_string()]);
        assert_eq!(s.check("x1", None), Binding::Unknown);
        assert_eq!(s.check("x3", None), Binding::Allowed);
        // A claimed session no longer counts as anonymous.
        assert_eq!(s.check("x2", Some(&principal("alice"))), Binding::Allowed);
        assert!(s.record("x4", None, 32).is_empty());
        assert_eq!(s.record("x5", None, 32), vec!["x3".to_string()]);
        assert_eq!(s.check("x2", Some(&principal("alice"))), Binding::Allowed);
        s.forget("x4");
        assert!(s.record("x6", None, 32).is_empty());
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_subject_keeps_a_bounded_number_of_sessions() {
        let s = SessionOwners::new();
        let alice = principal("alice");
        let bob = principal("bob");
        assert!(s.record("a1", Some(&alice), 2).is_empty());
        assert!(s.record("b1", Some(&bob), 2).is_empty());
        assert!(s.record("a2", Some(&alice), 2).is_empty());
        assert_eq!(s.record("a3", Some(&alice), 2), vec!["a1".to_string()]);
        assert_eq!(s.check("a1", Some(&alice)), Binding::Unknown);
        assert_eq!(s.check("a2", Some(&alice)), Binding::Allowed);
        assert_eq!(s.check("b1", Some(&bob)), Binding::Allowed);
        s.forget("a2");
        assert!(s.record("a4", Some(&alice), 2).is_empty());
        // A claimed anonymous session counts for its new owner.
        s.record("anon", None, 2);
        assert_eq!(s.check("anon", Some(&alice)), Binding::Allowed);
        assert_eq!(s.record("a5", Some(&alice), 2).len(), 2);
        assert_eq!(s.len(), 3);
    }
}
