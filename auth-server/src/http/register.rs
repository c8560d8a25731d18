//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592),
//! guarded by a `registration_access_token` stored only as a hash.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::domain::now;
use crate::domain::registration_policy::{self, ClientMetadata, RegistrationRequest};
use crate::error::{no_store, AppError, AppResult};
use crate::http::bearer;
use crate::state::AppState;
use crate::storage::ClientRecord;

fn metadata_error(e: registration_policy::RegistrationError) -> AppError {
    AppError::oauth(e.code(), e.to_string())
}

fn client_json(state: &AppState, client: &ClientRecord) -> Value {
    let mut body = serde_json::to_value(&client.metadata).unwrap_or_else(|_| json!({}));
    body["client_id"] = json!(client.client_id);
    body["client_id_issued_at"] = json!(client.created_at);
    body["registration_client_uri"] =
        json!(format!("{}/register/{}", state.issuer, client.client_id));
    if client.secret_hash.is_some() {
        body["client_secret_expires_at"] = json!(0);
    }
    body
}

/// A registration body: a JSON object whose member names are unique (a duplicate
/// `redirect_uris` could mean one thing to a proxy and another to us).
pub struct StrictObject(pub serde_json::Map<String, Value>);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StrictObject, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate member {key:?}"
                        )));
                    }
                    out.insert(key, value);
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

fn parse(body: web::Json<StrictObject>) -> AppResult<RegistrationRequest> {
    let value = Value::Object(body.into_inner().0);
    serde_json::from_value(value).map_err(|e| {
        AppError::oauth(
            "invalid_client_metadata",
            format!("malformed client metadata: {e}"),
        )
    })
}

pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<StrictObject>,
) -> AppResult<HttpResponse> {
    if !state.settings.registration.enabled {
        return Err(AppError::NotFound(
            "dynamic client registration is disabled".into(),
        ));
    }
    let ip = state.client_ip(&req);
    state.extensions.check_register(ip)?;
    let request = parse(body)?;
    let metadata =
        registration_policy::validate(request, state.settings.registration.max_redirect_uris)
            .map_err(metadata_error)?;
    let client_id = shared::secret::random_token(16);
    let secret = metadata
        .is_confidential()
        .then(|| shared::secret::random_token(32));
    let registration_token = shared::secret::random_token(32);
    let now = now();
    let client = ClientRecord {
        client_id: client_id.clone(),
        client_name: metadata.client_name.clone(),
        secret_hash: secret.as_deref().map(shared::secret::sha256_b64url),
        metadata,
        source: "dcr".into(),
        registration_token_hash: Some(shared::secret::sha256_b64url(&registration_token)),
        can_introspect: false,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_client(&client).await?;
    state
        .audit(
            "register",
            None,
            Some(&client_id),
            Some(ip.to_string()),
            client.client_name.as_deref().unwrap_or(""),
        )
        .await;
    let mut body = client_json(&state, &client);
    body["registration_access_token"] = json!(registration_token);
    if let Some(s) = secret {
        body["client_secret"] = json!(s);
    }
    let mut b = HttpResponse::Created();
    no_store(&mut b);
    Ok(b.json(body))
}

/// Authenticates an RFC 7592 request. Unknown clients and bad tokens both get 401
/// (RFC 7592 §2: never reveal whether the client exists).
async fn managed_client(
    req: &HttpRequest,
    state: &AppState,
    client_id: &str,
) -> AppResult<ClientRecord> {
    let token = bearer(req).ok_or_else(|| AppError::Bearer {
        status: StatusCode::UNAUTHORIZED,
        error: None,
        description: "a registration access token is required".into(),
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
        _ => Err(AppError::unauthorized(
            "the registration access token is invalid",
        )),
    }
}

pub async fn read(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let client = managed_client(&req, &state, &path).await?;
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    Ok(b.json(client_json(&state, &client)))
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StrictObject>,
) -> AppResult<HttpResponse> {
    let mut client = managed_client(&req, &state, &path).await?;
    let request = parse(body)?;
    if request.client_id.as_deref() != Some(client.client_id.as_str()) {
        return Err(AppError::invalid_request(
            "client_id in the body must match the client being updated",
        ));
    }
    if let (Some(presented), Some(hash)) = (
        request.client_secret.as_deref(),
        client.secret_hash.as_deref(),
    ) {
        if !shared::secret::constant_time_eq(&shared::secret::sha256_b64url(presented), hash) {
            return Err(AppError::invalid_request("client_secret does not match"));
        }
    }
    let metadata: ClientMetadata =
        registration_policy::validate(request, state.settings.registration.max_redirect_uris)
            .map_err(metadata_error)?;
    if metadata.is_confidential() != client.metadata.is_confidential() {
        return Err(AppError::oauth(
            "invalid_client_metadata",
            "token_endpoint_auth_method cannot switch between public and confidential; register a new client",
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
            Some(state.client_ip(&req).to_string()),
            "",
        )
        .await;
    let mut b = HttpResponse::Ok();
    no_store(&mut b);
    Ok(b.json(client_json(&state, &client)))
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let client = managed_client(&req, &state, &path).await?;
    state.store.delete_client(&client.client_id, now()).await?;
    state
        .audit(
            "register_delete",
            None,
            Some(&client.client_id),
            Some(state.client_ip(&req).to_string()),
            "",
        )
        .await;
    Ok(HttpResponse::NoContent().finish())
}
