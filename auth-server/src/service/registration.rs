//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592),
//! guarded by a `registration_access_token` stored only as a hash.

use std::net::IpAddr;

use crate::domain::now;
use crate::domain::registration_policy::{
    self, ClientMetadata, RedirectPolicy, RegistrationRequest,
};
use crate::storage::{ClientRecord, ClientSource};

use super::{AppState, ServiceError, ServiceResult};

/// A new client with the secrets shown once.
pub struct Registered {
    pub client: ClientRecord,
    pub client_secret: Option<String>,
    pub registration_access_token: String,
}

fn validate(state: &AppState, request: RegistrationRequest) -> ServiceResult<ClientMetadata> {
    let max = state.settings.registration.max_redirect_uris;
    Ok(registration_policy::validate(
        request,
        max,
        RedirectPolicy::AnyRegistrable,
    )?)
}

/// Whether this IP may register now (registration on, within its rate limit).
pub async fn admit(state: &AppState, ip: IpAddr) -> ServiceResult<()> {
    if !state.settings.registration.enabled {
        return Err(ServiceError::NotFound(
            "dynamic client registration is disabled".into(),
        ));
    }
    state.limits.check_register(ip).await
}

pub async fn register(
    state: &AppState,
    request: RegistrationRequest,
    ip: IpAddr,
) -> ServiceResult<Registered> {
    let metadata = validate(state, request)?;
    let client_secret = metadata
        .is_confidential()
        .then(|| shared::secret::random_token(32));
    let registration_access_token = shared::secret::random_token(32);
    let now = now();
    let client = ClientRecord {
        client_id: shared::secret::random_token(16),
        client_name: metadata.client_name.clone(),
        secret_hash: client_secret.as_deref().map(shared::secret::sha256_b64url),
        metadata,
        source: ClientSource::Dcr,
        registration_token_hash: Some(shared::secret::sha256_b64url(&registration_access_token)),
        can_introspect: false,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_client(&client).await?;
    let name = client.client_name.as_deref().unwrap_or("");
    state
        .audit(
            "register",
            None,
            Some(&client.client_id),
            Some(ip.to_string()),
            name,
        )
        .await;
    Ok(Registered {
        client,
        client_secret,
        registration_access_token,
    })
}

/// The client an RFC 7592 request manages. Unknown clients and bad tokens both get
/// 401 (RFC 7592 §2: never reveal whether the client exists).
pub async fn managed_client(
    state: &AppState,
    client_id: &str,
    token: Option<&str>,
) -> ServiceResult<ClientRecord> {
    let token = token.ok_or(ServiceError::TokenRequired {
        description: "a registration access token is required",
        scope: None,
    })?;
    let client = state.store.find_client(client_id).await?;
    let ok = client
        .as_ref()
        .and_then(|c| c.registration_token_hash.as_deref())
        .is_some_and(|h| {
            shared::secret::constant_time_eq(&shared::secret::sha256_b64url(token), h)
        });
    match client {
        Some(c) if ok => Ok(c),
        _ => Err(ServiceError::InvalidToken(
            "the registration access token is invalid".into(),
        )),
    }
}

pub async fn update(
    state: &AppState,
    mut client: ClientRecord,
    request: RegistrationRequest,
    ip: IpAddr,
) -> ServiceResult<ClientRecord> {
    if request.client_id.as_deref() != Some(client.client_id.as_str()) {
        return Err(ServiceError::InvalidRequest(
            "client_id in the body must match the client being updated".into(),
        ));
    }
    if let (Some(presented), Some(hash)) = (
        request.client_secret.as_deref(),
        client.secret_hash.as_deref(),
    ) {
        if !shared::secret::constant_time_eq(&shared::secret::sha256_b64url(presented), hash) {
            return Err(ServiceError::InvalidRequest(
                "client_secret does not match".into(),
            ));
        }
    }
    let metadata = validate(state, request)?;
    if metadata.is_confidential() != client.metadata.is_confidential() {
        return Err(ServiceError::ClientMetadata(
            registration_policy::RegistrationError::InvalidClientMetadata(
                "token_endpoint_auth_method cannot switch between public and confidential; register a new client".into(),
            ),
        ));
    }
    state
        .store
        .update_client_metadata(&client.client_id, &metadata, now())
        .await?;
    client.client_name = metadata.client_name.clone();
    client.metadata = metadata;
    state
        .audit(
            "register_update",
            None,
            Some(&client.client_id),
            Some(ip.to_string()),
            "",
        )
        .await;
    Ok(client)
}

pub async fn delete(state: &AppState, client: &ClientRecord, ip: IpAddr) -> ServiceResult<()> {
    state.store.delete_client(&client.client_id, now()).await?;
    state
        .audit(
            "register_delete",
            None,
            Some(&client.client_id),
            Some(ip.to_string()),
            "",
        )
        .await;
    Ok(())
}
