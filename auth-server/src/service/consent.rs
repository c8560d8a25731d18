//! Consent: skip the page when the user already approved this client for the
//! scope, otherwise ask; remember an approval; issue the authorization code.

use std::net::IpAddr;

use shared::ScopeSet;

use crate::domain::{now, scope_policy};
use crate::storage::{AuthCodeRecord, ClientSource, UserRecord};

use super::authorization::{AuthorizationError, AuthorizationRequest};
use super::{AppState, ServiceError, ServiceResult};

/// What follows the user's authentication.
pub enum ConsentStep {
    /// Consent was remembered: the code to send back.
    Issued { code: String },
    /// The consent page, with the scope on offer and the requested scopes the
    /// user's role cannot hold.
    Ask { scope: ScopeSet, withheld: ScopeSet },
}

/// The user's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn parse(raw: Option<&str>) -> ServiceResult<Decision> {
        match raw {
            Some("approve") => Ok(Decision::Approve),
            Some("deny") => Ok(Decision::Deny),
            _ => Err(ServiceError::NoDecision),
        }
    }
}

async fn remembered(
    state: &AppState,
    user: &UserRecord,
    request: &AuthorizationRequest,
) -> ServiceResult<Option<ScopeSet>> {
    Ok(state
        .store
        .find_consent(&user.id, &request.client.client_id)
        .await?
        .and_then(|s| ScopeSet::parse(&s).ok()))
}

/// After authentication: issue a code if consent is remembered, else ask.
pub async fn next_step(
    state: &AppState,
    request: &AuthorizationRequest,
    user: &UserRecord,
    auth_time: i64,
) -> Result<ConsentStep, AuthorizationError> {
    let scope = scope_policy::cut_to_role(&request.scope, user.role);
    // Scopes the user asked for but cannot hold: never skip the page then, so the user
    // sees why and can sign in with another account instead of getting a silent downgrade.
    let withheld = scope_policy::withheld_from_role(&request.scope, user.role);
    let remembered = remembered(state, user, request).await?;
    if !request.forces_consent()
        && withheld.is_empty()
        && remembered.is_some_and(|r| scope.is_subset_of(&r))
    {
        let code = issue_code(state, request, user, &scope, auth_time).await?;
        return Ok(ConsentStep::Issued { code });
    }
    if request.silent() {
        return Err(AuthorizationError::redirect(
            request,
            ServiceError::ConsentRequired,
        ));
    }
    Ok(ConsentStep::Ask { scope, withheld })
}

/// The user's decision on the consent page: on approval the code to send back.
pub async fn decide(
    state: &AppState,
    request: &AuthorizationRequest,
    (user, auth_time): (&UserRecord, i64),
    decision: Decision,
    ip: IpAddr,
) -> Result<String, AuthorizationError> {
    let client_id = request.client.client_id.as_str();
    if decision == Decision::Deny {
        let ip = Some(ip.to_string());
        state
            .audit(
                "consent_denied",
                Some(&user.username),
                Some(client_id),
                ip,
                "",
            )
            .await;
        return Err(AuthorizationError::redirect(
            request,
            ServiceError::AccessDenied,
        ));
    }
    let scope = scope_policy::cut_to_role(&request.scope, user.role);
    let remembered = remembered(state, user, request).await?.unwrap_or_default();
    let all = remembered.union(&scope).to_string();
    state
        .store
        .save_consent(&user.id, client_id, &all, now())
        .await?;
    let detail = format!("scope={scope}");
    let ip = Some(ip.to_string());
    state
        .audit(
            "consent",
            Some(&user.username),
            Some(client_id),
            ip,
            &detail,
        )
        .await;
    Ok(issue_code(state, request, user, &scope, auth_time).await?)
}

/// Stores a new authorization code for the request and returns it.
async fn issue_code(
    state: &AppState,
    request: &AuthorizationRequest,
    user: &UserRecord,
    scope: &ScopeSet,
    auth_time: i64,
) -> ServiceResult<String> {
    let code = shared::secret::random_token(32);
    let now = now();
    if request.client.source == ClientSource::Cimd {
        // Remember the metadata-document client so grants show its name.
        state.store.upsert_client(&request.client).await?;
    }
    state
        .store
        .insert_code(&AuthCodeRecord {
            code_hash: shared::secret::sha256_b64url(&code),
            client_id: request.client.client_id.clone(),
            user_id: user.id.clone(),
            redirect_uri: request.redirect.redirect_uri.clone(),
            scope: scope.to_string(),
            resource: request.resource.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time,
            created_at: now,
            expires_at: now + state.settings.oauth.authorization_code_ttl_secs,
            grant_id: None,
        })
        .await?;
    Ok(code)
}
