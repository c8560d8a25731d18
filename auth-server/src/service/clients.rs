//! Finding and authenticating clients: stored clients (registered, configured,
//! demo) and clients identified by a Client ID Metadata Document URL.

use crate::cimd::ClientMetadataDocument;
use crate::domain::client_auth::{self, ClientAuthError};
use crate::domain::now;
use crate::domain::registration_policy::ClientMetadata;
use crate::storage::{ClientRecord, ClientSource};

use super::{AppState, ServiceError, ServiceResult};

/// The client credentials a token, revocation or introspection request carried.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// A stored client, or for an https `client_id` the Client ID Metadata Document.
pub async fn find(state: &AppState, client_id: &str) -> ServiceResult<Option<ClientRecord>> {
    if let Some(c) = state.store.find_client(client_id).await? {
        if c.source != ClientSource::Cimd {
            return Ok(Some(c));
        }
    }
    // A URL client id that is not stored can only be a metadata document: say
    // why it cannot be used (CIMD off, not https, unreachable ...) rather than
    // calling the application unknown.
    if !crate::cimd::looks_like_url_client_id(client_id) {
        return Ok(None);
    }
    let Some(resolver) = &state.cimd else {
        return Err(ServiceError::ClientUnavailable(
            crate::cimd::CimdError::Disabled.to_string(),
        ));
    };
    match resolver.resolve(client_id).await {
        Ok(doc) => Ok(Some(cimd_client(doc))),
        Err(e) => Err(ServiceError::ClientUnavailable(e.to_string())),
    }
}

/// Authenticates the client of a token/revoke/introspect request.
pub async fn authenticate(
    state: &AppState,
    credentials: &ClientCredentials,
) -> ServiceResult<ClientRecord> {
    let authorization = credentials.authorization.as_deref();
    let basic = authorization.is_some_and(|a| client_auth::basic_credentials(a).is_some());
    let invalid = |description: String| ServiceError::InvalidClient { description, basic };
    let presented = client_auth::presented(
        authorization,
        credentials.client_id.as_deref(),
        credentials.client_secret.as_deref(),
    )
    .map_err(|e| match e {
        ClientAuthError::Missing => invalid("client authentication is required".into()),
        other => invalid(other.to_string()),
    })?;
    let found = find(state, &presented.client_id)
        .await
        .map_err(|e| match e {
            ServiceError::Store(_) | ServiceError::Internal(_) => e,
            other => invalid(other.to_string()),
        })?;
    let Some(client) = found else {
        return Err(invalid("client authentication failed".into()));
    };
    client_auth::verify(&presented, client.secret_hash.as_deref())
        .map_err(|_| invalid("client authentication failed".into()))?;
    Ok(client)
}

/// Whether the client is a resource server: a confidential client marked as one
/// (`can_introspect`) or holding `auth:introspect`. Only resource servers may
/// introspect tokens and read the revocation feed.
pub fn is_resource_server(client: &ClientRecord) -> bool {
    let marked = client.can_introspect
        || shared::ScopeSet::parse(&client.metadata.scope)
            .is_ok_and(|s| s.contains_literal(shared::scopes::AUTH_INTROSPECT));
    client.secret_hash.is_some() && marked
}

/// A client record for a pre-registered or synthesised client.
pub fn client_record(
    client_id: &str,
    name: Option<String>,
    secret_hash: Option<String>,
    metadata: ClientMetadata,
    source: ClientSource,
    can_introspect: bool,
) -> ClientRecord {
    let now = now();
    ClientRecord {
        client_id: client_id.to_string(),
        client_name: name,
        secret_hash,
        metadata,
        source,
        registration_token_hash: None,
        can_introspect,
        created_at: now,
        updated_at: now,
    }
}

/// A metadata-document client as a (public) client record: its metadata as the
/// document's validation left it.
fn cimd_client(doc: ClientMetadataDocument) -> ClientRecord {
    client_record(
        &doc.client_id,
        doc.metadata.client_name.clone(),
        None,
        doc.metadata,
        ClientSource::Cimd,
        false,
    )
}
