//! Whether the authorization server answered the last time the verifier asked it.
//!
//! An AS outage does not make this server unready: tokens signed with cached keys
//! (and cached introspection answers) keep verifying. `/readyz` reports it as a
//! degraded state instead, so that an operator sees it, and the state clears by
//! itself on the next successful contact: nothing about recovery depends on how
//! long the outage lasted.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::unix_now;

/// What `/readyz` shows about the AS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamStatus {
    /// `None` until the verifier has asked the AS anything.
    pub reachable: Option<bool>,
    /// Unix seconds of the first failed contact of the current outage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<i64>,
    /// Why the last contact failed (never holds a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Default)]
struct State {
    status: UpstreamStatus,
    last_contact: Option<Instant>,
}

/// The outcome of the verifier's latest request to the AS.
#[derive(Default)]
pub struct UpstreamHealth {
    state: Mutex<State>,
}

impl UpstreamHealth {
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_contact = Some(Instant::now());
        change(&mut state);
    }

    pub fn reachable(&self) {
        self.update(|s| {
            s.status = UpstreamStatus {
                reachable: Some(true),
                ..UpstreamStatus::default()
            }
        });
    }

    pub fn unreachable(&self, reason: &str) {
        self.update(|s| {
            let since = match s.status.reachable {
                Some(false) => s.status.unreachable_since,
                _ => None,
            };
            s.status = UpstreamStatus {
                reachable: Some(false),
                unreachable_since: Some(since.unwrap_or_else(unix_now)),
                last_error: Some(reason.to_string()),
            };
        });
    }

    /// Records the outcome of a request whose error is a description for the operator.
    pub fn record<T>(&self, outcome: &Result<T, String>) {
        match outcome {
            Ok(_) => self.reachable(),
            Err(e) => self.unreachable(e),
        }
    }

    pub fn status(&self) -> UpstreamStatus {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .clone()
    }

    /// Whether the AS was asked (successfully or not) less than `within` ago.
    pub fn asked_within(&self, within: Duration) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_contact
            .is_some_and(|t| t.elapsed() < within)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_keeps_its_start_and_clears_on_the_next_answer() {
        let health = UpstreamHealth::default();
        assert_eq!(health.status().reachable, None);
        assert!(!health.asked_within(Duration::from_secs(60)));
        health.unreachable("connection failed");
        let first = health.status();
        assert_eq!(first.reachable, Some(false));
        health.unreachable("timed out");
        let second = health.status();
        assert_eq!(second.unreachable_since, first.unreachable_since);
        assert_eq!(second.last_error.as_deref(), Some("timed out"));
        assert!(health.asked_within(Duration::from_secs(60)));
        health.record(&Ok::<_, String>(()));
        assert_eq!(
            health.status(),
            UpstreamStatus {
                reachable: Some(true),
                ..UpstreamStatus::default()
            }
        );
    }
}
