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
    // Users of identity providers have no password here.
    let user = state
        .store
        .find_user_by_name(username)
        .await?
        .filter(|u| u.idp.is_none());
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| passwords::dummy_hash().to_string());
    let ok = tokio::task::spawn_blocking(move || passwords::verify(&password, &hash))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(user.filter(|u| ok && !u.disabled))
}

/// A new browser session for `user` (after a password check or an identity provider).
pub async fn start_session(state: &AppState, user: UserRecord) -> ServiceResult<Session> {
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

/// Sign-out: ends the browser session (if any) and records it. Returns the
/// `post_logout_redirect_uri` to go to, if any (see [`logout_redirect`]).
pub async fn logout(
    state: &AppState,
    session_id: Option<&str>,
    target: LogoutTarget<'_>,
    ip: IpAddr,
) -> ServiceResult<Option<String>> {
    let user = match session_id {
        Some(id) => session_user(state, id).await?.map(|(user, _)| user),
        None => None,
    };
    let redirect = logout_redirect(state, &target, user.as_ref()).await?;
    if let Some(id) = session_id {
        if let Some(user) = &user {
            state
                .audit(
                    "logout",
                    Some(&user.username),
                    target.client_id,
                    Some(ip.to_string()),
                    "",
                )
                .await;
        }
        state
            .store
            .delete_session(&shared::secret::sha256_b64url(id))
            .await?;
    }
    Ok(redirect)
}

/// What `/logout` was asked (OIDC RP-Initiated Logout 1.0 §2).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogoutTarget<'a> {
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub id_token_hint: Option<&'a str>,
}

/// Where to send the browser after signing out: `post_logout_redirect_uri` only
/// when an `id_token_hint` we issued proves which client asks (the `client_id`,
/// when given, must be its audience), the URI is registered for that client, and
/// the hint is about the user of this session (when there is one). Anything
/// less and the browser stays on our "signed out" page: a link anyone can
/// craft must not turn the sign-out into a redirect to their site.
async fn logout_redirect(
    state: &AppState,
    target: &LogoutTarget<'_>,
    user: Option<&UserRecord>,
) -> ServiceResult<Option<String>> {
    let (Some(uri), Some(hint)) = (target.post_logout_redirect_uri, target.id_token_hint) else {
        return Ok(None);
    };
    let Ok(claims) =
        crate::domain::tokens::verify_id_token_hint(&state.ring(), hint, &state.issuer)
    else {
        return Ok(None);
    };
    if target.client_id.is_some_and(|c| c != claims.aud) || user.is_some_and(|u| u.id != claims.sub)
    {
        return Ok(None);
    }
    let Some(client) = super::clients::find(state, &claims.aud).await? else {
        return Ok(None);
    };
    Ok(client
        .metadata
        .redirect_uris
        .iter()
        .any(|r| r == uri)
        .then(|| uri.to_string()))
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
