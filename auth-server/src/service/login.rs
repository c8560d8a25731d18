//! Login: rate limits per address, per (username, address) and per known device, a
//! password check that takes as long for unknown users as for known ones, a response
//! time floor for every refusal, the audit trail, and the browser session.

use std::net::IpAddr;
use std::time::Instant;

use crate::domain::{now, passwords};
use crate::storage::{SessionRecord, UserRecord};

use super::limits::LoginOrigin;
use super::{AppState, ServiceError, ServiceResult};

pub struct LoginAttempt {
    pub username: String,
    pub password: String,
    pub ip: IpAddr,
    /// The client the user is signing in to (for the audit trail).
    pub client_id: String,
    /// The device cookie this browser presented, if any (opened, so genuine).
    pub device: Option<Device>,
}

/// A browser that signed in before: the content of its (sealed) device cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Random, names this browser's own failure budget.
    pub id: String,
    /// The user it signed in as (lower case).
    pub username: String,
}

impl Device {
    /// A new device for a browser that just signed in as `username`.
    fn issue(username: &str) -> Device {
        Device {
            id: shared::secret::random_token(16),
            username: username.to_lowercase(),
        }
    }

    /// Whether this device signed in as `username` before (usernames compare
    /// case-insensitively, as the limits do).
    fn vouches_for(&self, username: &str) -> bool {
        self.username == username.to_lowercase()
    }

    /// The cookie value: the id (URL-safe base64, no `.`) then the username.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.id, self.username)
    }

    pub fn decode(value: &str) -> Option<Device> {
        let (id, username) = value.split_once('.')?;
        (!id.is_empty() && !username.is_empty()).then(|| Device {
            id: id.to_owned(),
            username: username.to_owned(),
        })
    }
}

/// A new browser session.
pub struct Session {
    /// The secret session id for the cookie; only its hash is stored.
    pub id: String,
    pub user: UserRecord,
    pub auth_time: i64,
    pub ttl_secs: i64,
    /// The device cookie to give the browser: it keeps this browser out of the
    /// lockouts strangers cause for this user.
    pub device: Device,
}

pub enum LoginOutcome {
    SignedIn(Box<Session>),
    TooManyAttempts {
        retry_after_secs: u64,
    },
    /// The attempt cannot be admitted now (shared limits unreachable, failing closed).
    Unavailable {
        retry_after_secs: u64,
    },
    MissingCredentials,
    InvalidCredentials,
}

pub async fn login(state: &AppState, attempt: LoginAttempt) -> ServiceResult<LoginOutcome> {
    let started = Instant::now();
    let outcome = attempt_login(state, attempt, started).await?;
    if !matches!(outcome, LoginOutcome::SignedIn(_)) {
        state.login_delay.pad(started).await;
    }
    Ok(outcome)
}

async fn attempt_login(
    state: &AppState,
    attempt: LoginAttempt,
    started: Instant,
) -> ServiceResult<LoginOutcome> {
    let LoginAttempt {
        username,
        password,
        ip,
        client_id,
        device,
    } = attempt;
    let origin = match &device {
        Some(d) if d.vouches_for(&username) => LoginOrigin::KnownDevice(&d.id),
        _ => LoginOrigin::Stranger(ip),
    };
    match state.limits.check_login(origin, &username).await {
        Ok(()) => {}
        Err(ServiceError::RateLimited { retry_after_secs }) => {
            return Ok(LoginOutcome::TooManyAttempts { retry_after_secs })
        }
        Err(ServiceError::TemporarilyUnavailable { retry_after_secs }) => {
            return Ok(LoginOutcome::Unavailable { retry_after_secs })
        }
        Err(e) => return Err(e),
    }
    if username.is_empty() || password.is_empty() || username.len() > 128 || password.len() > 1024 {
        return Ok(LoginOutcome::MissingCredentials);
    }
    let ip = Some(ip.to_string());
    let user = verify_password(state, &username, password).await?;
    state.login_delay.record_check(started.elapsed());
    let Some(user) = user else {
        state.metrics.login(false);
        state.limits.charge_failed_login(origin, &username).await;
        let detail = "invalid credentials or disabled account";
        state
            .audit(
                "login_failure",
                Some(&username),
                Some(&client_id),
                ip,
                detail,
            )
            .await;
        return Ok(LoginOutcome::InvalidCredentials);
    };
    state.metrics.login(true);
    state
        .audit(
            "login_success",
            Some(&user.username),
            Some(&client_id),
            ip,
            "",
        )
        .await;
    Ok(LoginOutcome::SignedIn(Box::new(
        start_session(state, user).await?,
    )))
}

/// The active user with this name and password. Unknown users are checked against a
/// dummy hash, so that the answer takes as long as for a known user.
async fn verify_password(
    state: &AppState,
    username: &str,
    password: String,
) -> ServiceResult<Option<UserRecord>> {
    let user = state.store.find_user_by_name(username).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| passwords::dummy_hash().to_string());
    let ok = tokio::task::spawn_blocking(move || passwords::verify(&password, &hash))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(user.filter(|u| ok && !u.disabled))
}

async fn start_session(state: &AppState, user: UserRecord) -> ServiceResult<Session> {
    let id = shared::secret::random_token(32);
    let now = now();
    let ttl_secs = state.settings.server.session_ttl_secs;
    state
        .store
        .create_session(&SessionRecord {
            id_hash: shared::secret::sha256_b64url(&id),
            user_id: user.id.clone(),
            auth_time: now,
            expires_at: now + ttl_secs,
        })
        .await?;
    Ok(Session {
        id,
        device: Device::issue(&user.username),
        user,
        auth_time: now,
        ttl_secs,
    })
}

/// The active user of a browser session and when they authenticated.
pub async fn session_user(
    state: &AppState,
    session_id: &str,
) -> ServiceResult<Option<(UserRecord, i64)>> {
    let id_hash = shared::secret::sha256_b64url(session_id);
    let Some(session) = state.store.find_session(&id_hash, now()).await? else {
        return Ok(None);
    };
    match state.store.find_user_by_id(&session.user_id).await? {
        Some(u) if !u.disabled => Ok(Some((u, session.auth_time))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_vouches_only_for_its_user_and_survives_its_cookie() {
        let device = Device::issue("Alice");
        assert!(device.vouches_for("alice"));
        assert!(device.vouches_for("ALICE"));
        assert!(!device.vouches_for("bob"));
        assert_eq!(Device::decode(&device.encode()), Some(device.clone()));
        let odd = Device {
            id: "abc".into(),
            username: "first.last".into(),
        };
        assert_eq!(Device::decode(&odd.encode()), Some(odd));
        assert_eq!(Device::decode("no-dot"), None);
        assert_eq!(Device::decode(".alice"), None);
        assert_eq!(Device::decode("abc."), None);
    }
}
