//! The token endpoint: client authentication and rate limits shared by every
//! grant, then the grant's own flow.

use std::net::IpAddr;

use crate::domain::tokens::TokenResponse;
use crate::storage::{ClientRecord, UserRecord};

use super::client_credentials::{self, ClientCredentialsRequest};
use super::clients::{self, ClientCredentials};
use super::code_exchange::{self, CodeExchange};
use super::refresh::{self, RefreshRequest};
use super::{AppState, ServiceError, ServiceResult};

/// A token request by grant type.
pub enum Grant {
    AuthorizationCode(CodeExchange),
    RefreshToken(RefreshRequest),
    ClientCredentials(ClientCredentialsRequest),
}

impl Grant {
    /// The `grant_type` value (also the metrics label).
    pub fn name(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode(_) => "authorization_code",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::ClientCredentials(_) => "client_credentials",
        }
    }
}

/// Authenticates the client, then runs the grant.
pub async fn issue(
    state: &AppState,
    credentials: &ClientCredentials,
    grant: Grant,
    ip: IpAddr,
) -> ServiceResult<TokenResponse> {
    let grant_type = grant.name();
    let client = match clients::authenticate(state, credentials).await {
        Ok(c) => c,
        Err(e) => {
            state.metrics.token(grant_type, false);
            return Err(e);
        }
    };
    state.limits.check_token_client(&client.client_id).await?;
    let result = match grant {
        Grant::AuthorizationCode(r) => code_exchange::exchange(state, &client, r, ip).await,
        Grant::RefreshToken(r) => refresh::refresh(state, &client, r, ip).await,
        Grant::ClientCredentials(r) => client_credentials::issue(state, &client, r, ip).await,
    };
    state.metrics.token(grant_type, result.is_ok());
    result
}

/// The active user a grant belongs to.
pub(super) async fn active_user(
    state: &AppState,
    user_id: Option<&str>,
) -> ServiceResult<UserRecord> {
    let Some(id) = user_id else {
        return Err(ServiceError::InvalidGrant("the grant has no user".into()));
    };
    match state.store.find_user_by_id(id).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(ServiceError::InvalidGrant(
            "the user account is not active".into(),
        )),
    }
}

/// Refuses a grant type the client is not registered for.
pub(super) fn require_grant(client: &ClientRecord, grant: &str) -> ServiceResult<()> {
    if client.allows_grant(grant) {
        return Ok(());
    }
    Err(ServiceError::UnauthorizedClient(format!(
        "the client may not use the {grant} grant"
    )))
}
