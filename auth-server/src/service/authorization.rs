//! The authorization request (RFC 6749 §4.1.1 with RFC 7636, RFC 8707 and OIDC):
//! every check that does not need the user. Until the client and its redirect URI
//! are known an error is shown to the user; after that it goes back to the client.

use serde::{Deserialize, Serialize};
use shared::ScopeSet;

use crate::domain::{pkce, redirect_uri, scope_policy};
use crate::storage::{ClientRecord, ClientSource, StoreError};

use super::{clients, AppState, ServiceError};

/// The authorization request parameters, as sent (and carried through the forms).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub resource: Option<String>,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
    pub response_mode: Option<String>,
}

/// Where answers to the client go: its redirect URI with its `state`.
#[derive(Debug, Clone)]
pub struct ClientRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
}

/// A request that passed every check that does not need the user.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client: ClientRecord,
    pub redirect: ClientRedirect,
    pub scope: ScopeSet,
    pub resource: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub prompt: Option<String>,
}

impl AuthorizationRequest {
    fn prompts(&self, value: &str) -> bool {
        self.prompt
            .as_deref()
            .is_some_and(|p| p.split(' ').any(|x| x == value))
    }

    /// `prompt=login`: authenticate again despite a session.
    pub fn forces_login(&self) -> bool {
        self.prompts("login")
    }

    /// `prompt=consent`: ask again despite a remembered consent.
    pub fn forces_consent(&self) -> bool {
        self.prompts("consent")
    }

    /// `prompt=none`: never show a page.
    pub fn silent(&self) -> bool {
        self.prompt.as_deref() == Some("none")
    }
}

/// Why an authorization request cannot proceed.
#[derive(Debug)]
pub enum AuthorizationError {
    /// No redirect URI can be trusted: the user sees the error.
    Untrusted(ServiceError),
    /// Sent back to the client's redirect URI.
    Redirect(ClientRedirect, ServiceError),
}

impl AuthorizationError {
    pub fn redirect(request: &AuthorizationRequest, error: ServiceError) -> Self {
        AuthorizationError::Redirect(request.redirect.clone(), error)
    }
}

impl From<ServiceError> for AuthorizationError {
    fn from(e: ServiceError) -> Self {
        AuthorizationError::Untrusted(e)
    }
}

impl From<StoreError> for AuthorizationError {
    fn from(e: StoreError) -> Self {
        AuthorizationError::Untrusted(e.into())
    }
}

/// The client and its redirect URI: the two facts an error redirect needs.
async fn trusted_redirect(
    state: &AppState,
    p: &AuthorizeParams,
) -> Result<(ClientRecord, ClientRedirect), ServiceError> {
    let client_id = p
        .client_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(ServiceError::MissingClientId)?;
    let client = clients::find(state, client_id)
        .await?
        .ok_or(ServiceError::UnknownClient)?;
    let redirect_uri =
        redirect_uri::resolve(&client.metadata.redirect_uris, p.redirect_uri.as_deref())
            .ok_or(ServiceError::UnregisteredRedirect)?
            .to_string();
    let redirect = ClientRedirect {
        redirect_uri,
        state: p.state.clone(),
    };
    Ok((client, redirect))
}

pub async fn validate(
    state: &AppState,
    p: &AuthorizeParams,
) -> Result<AuthorizationRequest, AuthorizationError> {
    let (client, redirect) = trusted_redirect(state, p).await?;
    match check(state, p, &client) {
        Ok((scope, resource, code_challenge)) => Ok(AuthorizationRequest {
            client,
            redirect,
            scope,
            resource,
            code_challenge,
            nonce: p.nonce.clone(),
            prompt: p.prompt.clone(),
        }),
        Err(e) => Err(AuthorizationError::Redirect(redirect, e)),
    }
}

/// The checks whose failures go back to the client: the scope, the resource and
/// the PKCE challenge of an acceptable request.
fn check(
    state: &AppState,
    p: &AuthorizeParams,
    client: &ClientRecord,
) -> Result<(ScopeSet, String, String), ServiceError> {
    if p.response_type.as_deref() != Some("code") {
        return Err(ServiceError::UnsupportedResponseType(
            "response_type must be code".into(),
        ));
    }
    if p.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Err(ServiceError::InvalidRequest(
            "only response_mode=query is supported".into(),
        ));
    }
    if !client.allows_grant("authorization_code") {
        return Err(ServiceError::UnauthorizedClient(
            "the client is not registered for the authorization_code grant".into(),
        ));
    }
    let code_challenge = pkce::validate_challenge(
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    )?;
    // Only operator-configured clients are limited to their registered scope. A
    // self-registered (DCR/CIMD) `scope` is a hint: MCP clients register with the
    // scope of their first challenge and must still be able to step up later.
    let client_scope = if client.source == ClientSource::Config {
        ScopeSet::parse(&client.metadata.scope).unwrap_or_default()
    } else {
        ScopeSet::new()
    };
    let scope = scope_policy::resolve_authorization_scope(
        p.scope.as_deref(),
        &state.settings.oauth.default_scopes,
        &client_scope,
    )?;
    let resource = state.resolve_resource(p.resource.as_deref())?;
    if p.nonce.as_ref().is_some_and(|n| n.len() > 512)
        || p.state.as_ref().is_some_and(|s| s.len() > 2048)
    {
        return Err(ServiceError::InvalidRequest(
            "state or nonce is too long".into(),
        ));
    }
    Ok((scope, resource, code_challenge))
}
