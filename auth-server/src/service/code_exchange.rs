//! The authorization_code grant: single-use codes (a replay revokes what the code
//! issued), bound to the client, the redirect URI, the PKCE challenge and the
//! resource of the authorization request.

use std::net::IpAddr;

use shared::ScopeSet;

use crate::domain::tokens::TokenResponse;
use crate::domain::{now, pkce, redirect_uri};
use crate::storage::{
    AuthCodeRecord, ClientRecord, CodeRedemption, GrantRecord, Issued, StoreError, UserRecord,
};

use super::token::{active_user, require_grant};
use super::{issuance, AppState, ServiceError, ServiceResult};

#[derive(Debug, Default)]
pub struct CodeExchange {
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub resource: Option<String>,
}

fn already_used() -> ServiceError {
    ServiceError::InvalidGrant("the authorization code was already used".into())
}

pub async fn exchange(
    state: &AppState,
    client: &ClientRecord,
    request: CodeExchange,
    ip: IpAddr,
) -> ServiceResult<TokenResponse> {
    require_grant(client, "authorization_code")?;
    let code = request
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ServiceError::InvalidRequest("code is required".into()))?;
    let code_hash = shared::secret::sha256_b64url(code);
    let record = redeem(state, client, &code_hash, ip).await?;
    check_binding(state, client, &record, &request)?;
    let user = active_user(state, Some(&record.user_id)).await?;
    create_grant(state, client, &record, &user, &code_hash, ip).await
}

/// Takes the code (single use). A replay by its own client revokes the grant the
/// first redemption created.
async fn redeem(
    state: &AppState,
    client: &ClientRecord,
    code_hash: &str,
    ip: IpAddr,
) -> ServiceResult<AuthCodeRecord> {
    let now = now();
    match state.store.redeem_code(code_hash, now).await? {
        CodeRedemption::NotFound => Err(ServiceError::InvalidGrant(
            "the authorization code is invalid".into(),
        )),
        CodeRedemption::Replayed(rec) => {
            if rec.client_id == client.client_id {
                if let Some(grant_id) = &rec.grant_id {
                    state.store.revoke_grant(grant_id, now, false).await?;
                }
                let detail = "authorization code reused; tokens it issued were revoked";
                let ip = Some(ip.to_string());
                state
                    .audit("code_replay", None, Some(&client.client_id), ip, detail)
                    .await;
            }
            Err(already_used())
        }
        CodeRedemption::Fresh(rec) => Ok(rec),
    }
}

/// The code was issued to this client, is unexpired, and the request repeats the
/// redirect URI, proves the PKCE verifier and names no other resource.
fn check_binding(
    state: &AppState,
    client: &ClientRecord,
    record: &AuthCodeRecord,
    request: &CodeExchange,
) -> ServiceResult<()> {
    let invalid = |d: &str| Err(ServiceError::InvalidGrant(d.into()));
    if record.client_id != client.client_id {
        return invalid("the authorization code was issued to another client");
    }
    if record.expires_at <= now() {
        return invalid("the authorization code has expired");
    }
    match request.redirect_uri.as_deref() {
        Some(uri) if uri == record.redirect_uri => {}
        Some(_) => return invalid("redirect_uri does not match the authorization request"),
        None => {
            let only = redirect_uri::resolve(&client.metadata.redirect_uris, None);
            if only != Some(record.redirect_uri.as_str()) {
                return Err(ServiceError::InvalidRequest(
                    "redirect_uri is required".into(),
                ));
            }
        }
    }
    pkce::verify(request.code_verifier.as_deref(), &record.code_challenge)?;
    state.ensure_bound_resource(
        request.resource.as_deref(),
        &record.resource,
        "the authorization request",
    )
}

/// The tokens of a new grant, with the values only the response shows.
struct Minted {
    issued: Issued,
    access_token: String,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

fn mint(
    state: &AppState,
    client: &ClientRecord,
    record: &AuthCodeRecord,
    user: &UserRecord,
    (scope, grant_id): (&ScopeSet, &str),
) -> ServiceResult<Minted> {
    let client_id = client.client_id.as_str();
    let (access_token, access) = issuance::mint_access(
        state,
        client_id,
        Some(user),
        scope,
        &record.resource,
        Some(grant_id),
    )?;
    let refresh = issuance::wants_refresh(state, client, scope)
        .then(|| issuance::new_refresh(state, grant_id, scope));
    let nonce = record.nonce.clone();
    let id_token = issuance::id_token_for(state, client_id, user, scope, record.auth_time, nonce)?;
    let (refresh_token, refresh) = refresh.unzip();
    Ok(Minted {
        issued: Issued { access, refresh },
        access_token,
        refresh_token,
        id_token,
    })
}

/// Mints the tokens and stores the grant with them, the code's link to it and the
/// audit row in one transaction: nothing is issued without its audit row.
async fn create_grant(
    state: &AppState,
    client: &ClientRecord,
    record: &AuthCodeRecord,
    user: &UserRecord,
    code_hash: &str,
    ip: IpAddr,
) -> ServiceResult<TokenResponse> {
    let scope =
        ScopeSet::parse(&record.scope).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let grant_id = uuid::Uuid::new_v4().simple().to_string();
    let minted = mint(state, client, record, user, (&scope, &grant_id))?;
    let issued = &minted.issued;
    let grant = GrantRecord {
        id: grant_id,
        user_id: Some(user.id.clone()),
        client_id: client.client_id.clone(),
        scope: scope.to_string(),
        resource: record.resource.clone(),
        auth_time: record.auth_time,
        created_at: now(),
        expires_at: issued
            .refresh
            .as_ref()
            .map_or(issued.access.expires_at, |r| r.expires_at),
        revoked_at: None,
    };
    let detail = format!("grant=authorization_code scope={scope}");
    let ip = Some(ip.to_string());
    let audit = AppState::audit_record(
        "token_issued",
        Some(&user.username),
        Some(&client.client_id),
        ip,
        &detail,
    );
    match state
        .store
        .create_grant(&grant, issued, Some(code_hash), Some(&audit))
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(already_used()),
        Err(e) => return Err(e.into()),
    }
    Ok(issuance::token_response(
        state,
        minted.access_token,
        &scope,
        minted.refresh_token,
        minted.id_token,
    ))
}
