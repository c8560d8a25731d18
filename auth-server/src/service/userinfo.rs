//! OIDC userinfo (Core §5.3): the active user of an access token, with what the
//! token's scope discloses.

use shared::ScopeSet;

use crate::storage::UserRecord;

use super::{issuance, AppState, ServiceError, ServiceResult};

pub async fn userinfo(
    state: &AppState,
    token: Option<&str>,
) -> ServiceResult<(UserRecord, ScopeSet)> {
    let token = token.ok_or(ServiceError::TokenRequired {
        description: "a bearer token is required",
        scope: None,
    })?;
    let claims = issuance::verify_access_token(state, token).await?;
    let scope = ScopeSet::parse(&claims.scope).unwrap_or_default();
    let user = state.store.find_user_by_id(&claims.sub).await?;
    match user.filter(|u| !u.disabled) {
        Some(user) => Ok((user, scope)),
        None => Err(ServiceError::InvalidToken(
            "the token does not belong to an active user".into(),
        )),
    }
}
