//! Login: rate limits per IP and per username, a password check that takes as long
//! for unknown users as for known ones, the audit trail, and the browser session.

use std::net::IpAddr;

use crate::domain::{now, passwords};
use crate::storage::{SessionRecord, UserRecord};

use super::{AppState, ServiceError, ServiceResult};

pub struct LoginAttempt {
    pub username: String,
    pub password: String,
    pub ip: IpAddr,
    /// The client the user is signing in to (for the audit trail).
    pub client_id: String,
}

/// A new browser session.
pub struct Session {
    /// The secret session id for the cookie; only its hash is stored.
    pub id: String,
    pub user: UserRecord,
    pub auth_time: i64,
    pub ttl_secs: i64,
}

pub enum LoginOutcome {
    SignedIn(Session),
    TooManyAttempts { retry_after_secs: u64 },
    MissingCredentials,
    InvalidCredentials,
}

pub async fn login(state: &AppState, attempt: LoginAttempt) -> ServiceResult<LoginOutcome> {
    let LoginAttempt {
        username,
        password,
        ip,
        client_id,
    } = attempt;
    match state.limits.check_login(ip, &username) {
        Ok(()) => {}
        Err(ServiceError::RateLimited { retry_after_secs }) => {
            return Ok(LoginOutcome::TooManyAttempts { retry_after_secs })
        }
        Err(e) => return Err(e),
    }
    if username.is_empty() || password.is_empty() || username.len() > 128 || password.len() > 1024 {
        return Ok(LoginOutcome::MissingCredentials);
    }
    let ip = Some(ip.to_string());
    let Some(user) = verify_password(state, &username, password).await? else {
        state.metrics.login(false);
        state.limits.charge_failed_login(&username);
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
    Ok(LoginOutcome::SignedIn(start_session(state, user).await?))
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
