//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592);
//! the flows live in `crate::service::registration`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::domain::registration_policy::{RegistrationError, RegistrationRequest};
use crate::error::{no_store, AppResult};
use crate::http::{bearer, client_ip, no_store_json};
use crate::service::{registration, AppState, ServiceError, ServiceResult};
use crate::storage::ClientRecord;

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

/// The registration request a body holds (unknown members ignored, RFC 7591 §2).
pub fn parse(body: StrictObject) -> ServiceResult<RegistrationRequest> {
    let value = Value::Object(body.0);
    serde_json::from_value(value).map_err(|e| {
        ServiceError::ClientMetadata(RegistrationError::InvalidClientMetadata(format!(
            "malformed client metadata: {e}"
        )))
    })
}

pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<StrictObject>,
) -> AppResult<HttpResponse> {
    let ip = client_ip(&state, &req);
    registration::admit(&state, ip).await?;
    let registered = registration::register(&state, parse(body.into_inner())?, ip).await?;
    let mut body = client_json(&state, &registered.client);
    body["registration_access_token"] = json!(registered.registration_access_token);
    if let Some(s) = registered.client_secret {
        body["client_secret"] = json!(s);
    }
    let mut b = HttpResponse::Created();
    no_store(&mut b);
    Ok(b.json(body))
}

pub async fn read(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let client = registration::managed_client(&state, &path, bearer(&req)).await?;
    Ok(no_store_json(client_json(&state, &client)))
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<StrictObject>,
) -> AppResult<HttpResponse> {
    let client = registration::managed_client(&state, &path, bearer(&req)).await?;
    let request = parse(body.into_inner())?;
    let client = registration::update(&state, client, request, client_ip(&state, &req)).await?;
    Ok(no_store_json(client_json(&state, &client)))
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let client = registration::managed_client(&state, &path, bearer(&req)).await?;
    registration::delete(&state, &client, client_ip(&state, &req)).await?;
    Ok(HttpResponse::NoContent().finish())
}
