//! The client_credentials grant: a confidential client's own token, within its
//! registered scope, for a configured resource or (by default) this server.

use std::net::IpAddr;

use shared::ScopeSet;

use crate::domain::scope_policy;
use crate::domain::tokens::TokenResponse;
use crate::storage::ClientRecord;

use super::{issuance, AppState, ServiceError, ServiceResult};

#[derive(Debug, Default)]
pub struct ClientCredentialsRequest {
    pub scope: Option<String>,
    pub resource: Option<String>,
}

pub async fn issue(
    state: &AppState,
    client: &ClientRecord,
    request: ClientCredentialsRequest,
    ip: IpAddr,
) -> ServiceResult<TokenResponse> {
    if client.secret_hash.is_none() || !client.allows_grant("client_credentials") {
        return Err(ServiceError::UnauthorizedClient(
            "the client may not use the client_credentials grant".into(),
        ));
    }
    let registered = ScopeSet::parse(&client.metadata.scope).unwrap_or_default();
    let scope =
        scope_policy::resolve_client_credentials_scope(request.scope.as_deref(), &registered)?;
    let audience = match request.resource.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => state.resolve_resource(Some(r))?,
        None => state.issuer.clone(),
    };
    let (access_token, access) =
        issuance::mint_access(state, &client.client_id, None, &scope, &audience, None)?;
    state.store.insert_access_token(&access).await?;
    let detail = format!("grant=client_credentials scope={scope}");
    state
        .audit(
            "token_issued",
            None,
            Some(&client.client_id),
            Some(ip.to_string()),
            &detail,
        )
        .await;
    Ok(issuance::token_response(
        state,
        access_token,
        &scope,
        None,
        None,
    ))
}
