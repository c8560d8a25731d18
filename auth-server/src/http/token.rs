//! `POST /token`: authorization_code (PKCE, single-use codes, replay revokes),
//! refresh_token (rotation, family revocation on reuse, grace window, narrowing
//! only, bound audience) and client_credentials. Every answer is `no-store`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use shared::scopes::{self, ScopeSet};

use crate::domain::scope_policy::{self, Role};
use crate::domain::tokens::TokenResponse;
use crate::domain::{now, pkce, redirect_uri};
use crate::error::{no_store, AppError, AppResult};
use crate::state::AppState;
use crate::storage::{
    ClientRecord, CodeRedemption, GrantRecord, Issued, RefreshRecord, UserRecord,
};

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub refresh_token: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
}

fn respond(body: &TokenResponse) -> HttpResponse {
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    b.json(body)
}

pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<TokenForm>,
) -> AppResult<HttpResponse> {
    let form = form.into_inner();
    let ip = state.client_ip(&req);
    state.extensions.check_token_ip(ip)?;
    let grant_type = form
        .grant_type
        .clone()
        .ok_or_else(|| AppError::invalid_request("grant_type is required"))?;
    if !matches!(
        grant_type.as_str(),
        "authorization_code" | "refresh_token" | "client_credentials"
    ) {
        return Err(AppError::oauth(
            "unsupported_grant_type",
            format!("grant_type {grant_type:?} is not supported"),
        ));
    }
    let client = state
        .authenticate_client(
            &req,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
        )
        .await;
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            state.extensions.metric_token(&grant_type, false);
            return Err(e);
        }
    };
    state.extensions.check_token_client(&client.client_id)?;
    let result = match grant_type.as_str() {
        "authorization_code" => authorization_code(&state, &client, form, ip).await,
        "refresh_token" => refresh(&state, &client, form, ip).await,
        _ => client_credentials(&state, &client, form, ip).await,
    };
    state.extensions.metric_token(&grant_type, result.is_ok());
    result.map(|body| respond(&body))
}

fn wants_refresh(state: &AppState, client: &ClientRecord, scope: &ScopeSet) -> bool {
    scope.contains_literal(scopes::OFFLINE_ACCESS)
        || (state.settings.oauth.refresh_for_refresh_grant_clients
            && client.allows_grant("refresh_token"))
}

fn new_refresh(state: &AppState, grant_id: &str, scope: &ScopeSet) -> (String, RefreshRecord) {
    let token = shared::secret::random_token(32);
    let now = now();
    (
        token.clone(),
        RefreshRecord {
            token_hash: shared::secret::sha256_b64url(&token),
            grant_id: grant_id.to_string(),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + state.settings.oauth.refresh_token_ttl_secs,
            rotated_at: None,
        },
    )
}

async fn active_user(state: &AppState, user_id: Option<&str>) -> AppResult<UserRecord> {
    let Some(id) = user_id else {
        return Err(AppError::invalid_grant("the grant has no user"));
    };
    match state.store.find_user_by_id(id).await? {
        Some(u) if !u.disabled => Ok(u),
        _ => Err(AppError::invalid_grant("the user account is not active")),
    }
}

async fn authorization_code(
    state: &AppState,
    client: &ClientRecord,
    form: TokenForm,
    ip: std::net::IpAddr,
) -> AppResult<TokenResponse> {
    if !client.allows_grant("authorization_code") {
        return Err(AppError::oauth(
            "unauthorized_client",
            "the client may not use the authorization_code grant",
        ));
    }
    let code = form
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| AppError::invalid_request("code is required"))?;
    let code_hash = shared::secret::sha256_b64url(code);
    let now = now();
    let record = match state.store.redeem_code(&code_hash, now).await? {
        CodeRedemption::NotFound => {
            return Err(AppError::invalid_grant("the authorization code is invalid"))
        }
        CodeRedemption::Replayed(rec) => {
            if rec.client_id == client.client_id {
                if let Some(grant_id) = &rec.grant_id {
                    state.store.revoke_grant(grant_id, now, false).await?;
                }
                state
                    .audit(
                        "code_replay",
                        None,
                        Some(&client.client_id),
                        Some(ip.to_string()),
                        "authorization code reused; tokens it issued were revoked",
                    )
                    .await;
            }
            return Err(AppError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        CodeRedemption::Fresh(rec) => rec,
    };
    if record.client_id != client.client_id {
        return Err(AppError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if record.expires_at <= now {
        return Err(AppError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    match form.redirect_uri.as_deref() {
        Some(uri) if uri == record.redirect_uri => {}
        Some(_) => {
            return Err(AppError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ))
        }
        None => {
            let only = redirect_uri::resolve(&client.metadata.redirect_uris, None);
            if only != Some(record.redirect_uri.as_str()) {
                return Err(AppError::invalid_request("redirect_uri is required"));
            }
        }
    }
    pkce::verify(form.code_verifier.as_deref(), &record.code_challenge)
        .map_err(|e| AppError::invalid_grant(e.to_string()))?;
    if let Some(requested) = form.resource.as_deref().filter(|r| !r.is_empty()) {
        let canonical = state
            .resolve_resource(Some(requested))
            .map_err(|e| AppError::oauth("invalid_target", e))?;
        if canonical != record.resource {
            return Err(AppError::oauth(
                "invalid_target",
                "resource differs from the authorization request",
            ));
        }
    }
    let user = active_user(state, Some(&record.user_id)).await?;
    let scope = ScopeSet::parse(&record.scope).map_err(|e| AppError::Internal(e.to_string()))?;
    let grant_id = uuid::Uuid::new_v4().simple().to_string();
    let (access_token, access) = state.mint_access(
        &client.client_id,
        Some(&user),
        &scope,
        &record.resource,
        Some(&grant_id),
    )?;
    let refresh =
        wants_refresh(state, client, &scope).then(|| new_refresh(state, &grant_id, &scope));
    let id_token = if scope.contains_literal(scopes::OPENID) {
        Some(state.mint_id_token(
            &client.client_id,
            &user,
            &scope,
            record.auth_time,
            record.nonce.clone(),
        )?)
    } else {
        None
    };
    let grant = GrantRecord {
        id: grant_id,
        user_id: Some(user.id.clone()),
        client_id: client.client_id.clone(),
        scope: scope.to_string(),
        resource: record.resource.clone(),
        auth_time: record.auth_time,
        created_at: now,
        expires_at: refresh
            .as_ref()
            .map(|r| r.1.expires_at)
            .unwrap_or(access.expires_at),
        revoked_at: None,
    };
    let issued = Issued {
        access,
        refresh: refresh.as_ref().map(|r| r.1.clone()),
    };
    // The audit row commits together with the grant: nothing is issued without it.
    let audit = AppState::audit_record(
        "token_issued",
        Some(&user.username),
        Some(&client.client_id),
        Some(ip.to_string()),
        &format!("grant=authorization_code scope={scope}"),
    );
    match state
        .store
        .create_grant(&grant, &issued, Some(&code_hash), Some(&audit))
        .await
    {
        Ok(()) => {}
        Err(crate::storage::StoreError::Conflict(_)) => {
            return Err(AppError::invalid_grant(
                "the authorization code was already used",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.settings.oauth.access_token_ttl_secs,
        scope: scope.to_string(),
        refresh_token: refresh.map(|r| r.0),
        id_token,
    })
}

async fn refresh(
    state: &AppState,
    client: &ClientRecord,
    form: TokenForm,
    ip: std::net::IpAddr,
) -> AppResult<TokenResponse> {
    let presented = form
        .refresh_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::invalid_request("refresh_token is required"))?;
    let hash = shared::secret::sha256_b64url(presented);
    let now = now();
    let Some(record) = state.store.find_refresh(&hash).await? else {
        return Err(AppError::invalid_grant("the refresh token is invalid"));
    };
    let Some(grant) = state.store.find_grant(&record.grant_id).await? else {
        return Err(AppError::invalid_grant("the refresh token is invalid"));
    };
    if grant.client_id != client.client_id {
        return Err(AppError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if grant.revoked_at.is_some() || record.expires_at <= now {
        return Err(AppError::invalid_grant(
            "the refresh token is no longer valid",
        ));
    }
    let user = active_user(state, grant.user_id.as_deref()).await?;
    let mut in_grace = false;
    if let Some(rotated_at) = record.rotated_at {
        if now - rotated_at < state.settings.oauth.refresh_grace_secs {
            in_grace = true;
        } else {
            state.store.revoke_grant(&grant.id, now, false).await?;
            state
                .audit(
                    "refresh_reuse",
                    Some(&user.username),
                    Some(&client.client_id),
                    Some(ip.to_string()),
                    "rotated refresh token reused; family revoked",
                )
                .await;
            return Err(AppError::invalid_grant(
                "the refresh token was already used",
            ));
        }
    }
    let family_scope =
        ScopeSet::parse(&record.scope).map_err(|e| AppError::Internal(e.to_string()))?;
    let scope = scope_policy::narrow_on_refresh(form.scope.as_deref(), &family_scope)
        .map_err(|e| AppError::oauth("invalid_scope", e.to_string()))?;
    if let Some(requested) = form.resource.as_deref().filter(|r| !r.is_empty()) {
        let canonical = state
            .resolve_resource(Some(requested))
            .map_err(|e| AppError::oauth("invalid_target", e))?;
        if canonical != grant.resource {
            return Err(AppError::oauth(
                "invalid_target",
                "resource differs from the original grant",
            ));
        }
    }
    let role = Role::parse(&user.role).unwrap_or(Role::User);
    let scope = scope_policy::cut_to_role(&scope, role);
    let family_scope = scope_policy::cut_to_role(&family_scope, role);
    let (access_token, access) = state.mint_access(
        &client.client_id,
        Some(&user),
        &scope,
        &grant.resource,
        Some(&grant.id),
    )?;
    let (refresh_token, refresh_record) = new_refresh(state, &grant.id, &family_scope);
    let issued = Issued {
        access,
        refresh: Some(refresh_record),
    };
    let rotated = if in_grace {
        false
    } else {
        state.store.rotate_refresh(&hash, now, &issued).await?
    };
    if !rotated {
        // A concurrent duplicate within the grace window: hand out fresh tokens
        // for the same family instead of treating it as theft.
        state.store.add_tokens(&issued).await?;
    }
    let id_token = if scope.contains_literal(scopes::OPENID) {
        Some(state.mint_id_token(&client.client_id, &user, &scope, grant.auth_time, None)?)
    } else {
        None
    };
    state
        .audit(
            "token_refreshed",
            Some(&user.username),
            Some(&client.client_id),
            Some(ip.to_string()),
            if rotated { "rotated" } else { "grace window" },
        )
        .await;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.settings.oauth.access_token_ttl_secs,
        scope: scope.to_string(),
        refresh_token: Some(refresh_token),
        id_token,
    })
}

async fn client_credentials(
    state: &AppState,
    client: &ClientRecord,
    form: TokenForm,
    ip: std::net::IpAddr,
) -> AppResult<TokenResponse> {
    if client.secret_hash.is_none() || !client.allows_grant("client_credentials") {
        return Err(AppError::oauth(
            "unauthorized_client",
            "the client may not use the client_credentials grant",
        ));
    }
    let registered = ScopeSet::parse(&client.metadata.scope).unwrap_or_default();
    let scope = scope_policy::resolve_client_credentials_scope(form.scope.as_deref(), &registered)
        .map_err(|e| AppError::oauth("invalid_scope", e.to_string()))?;
    let audience = match form.resource.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => state
            .resolve_resource(Some(r))
            .map_err(|e| AppError::oauth("invalid_target", e))?,
        None => state.issuer.clone(),
    };
    let (access_token, access) =
        state.mint_access(&client.client_id, None, &scope, &audience, None)?;
    state.store.insert_access_token(&access).await?;
    state
        .audit(
            "token_issued",
            None,
            Some(&client.client_id),
            Some(ip.to_string()),
            &format!("grant=client_credentials scope={scope}"),
        )
        .await;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.settings.oauth.access_token_ttl_secs,
        scope: scope.to_string(),
        refresh_token: None,
        id_token: None,
    })
}
