//! Token revocation (RFC 7009). Unknown tokens are not an error; a refresh token
//! revokes its whole grant, an access token only itself, and only the client the
//! token was issued to may revoke it.

use std::net::IpAddr;

use crate::domain::{now, tokens};
use crate::storage::ClientRecord;

use super::clients::{self, ClientCredentials};
use super::{AppState, ServiceError, ServiceResult};

pub async fn revoke(
    state: &AppState,
    credentials: &ClientCredentials,
    token: Option<&str>,
    ip: IpAddr,
) -> ServiceResult<()> {
    let client = clients::authenticate(state, credentials).await?;
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ServiceError::InvalidRequest("token is required".into()))?;
    if tokens::looks_like_jwt(token) {
        revoke_access_token(state, &client, token, ip).await
    } else {
        revoke_refresh_token(state, &client, token, ip).await
    }
}

async fn revoke_access_token(
    state: &AppState,
    client: &ClientRecord,
    token: &str,
    ip: IpAddr,
) -> ServiceResult<()> {
    // Resource servers may accept a token a little past `exp`: revoking it must
    // still count within that leeway.
    let leeway = tokens::RESOURCE_SERVER_LEEWAY_SECS;
    let verified =
        tokens::verify_access_token_with_leeway(&state.ring(), token, &state.issuer, leeway);
    let Ok(claims) = verified else {
        return Ok(());
    };
    if claims.client_id == client.client_id
        && state.store.revoke_access_token(&claims.jti, now()).await?
    {
        let username = claims.preferred_username.as_deref();
        state
            .audit(
                "revoke",
                username,
                Some(&client.client_id),
                Some(ip.to_string()),
                "access token",
            )
            .await;
    }
    Ok(())
}

async fn revoke_refresh_token(
    state: &AppState,
    client: &ClientRecord,
    token: &str,
    ip: IpAddr,
) -> ServiceResult<()> {
    let hash = shared::secret::sha256_b64url(token);
    let Some(rec) = state.store.find_refresh(&hash).await? else {
        return Ok(());
    };
    let Some(grant) = state.store.find_grant(&rec.grant_id).await? else {
        return Ok(());
    };
    if grant.client_id == client.client_id
        && state.store.revoke_grant(&grant.id, now(), false).await?
    {
        let detail = format!("refresh token; grant {}", grant.id);
        state
            .audit(
                "revoke",
                None,
                Some(&client.client_id),
                Some(ip.to_string()),
                &detail,
            )
            .await;
    }
    Ok(())
}
