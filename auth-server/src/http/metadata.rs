//! RFC 8414 authorization-server metadata and the (complete) OIDC discovery
//! document, at the root and at the path-inserted form when the issuer has a path.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use shared::metadata::AuthorizationServerMetadata;

use crate::domain::scope_policy;
use crate::error::{AppError, AppResult};
use crate::service::AppState;

/// The members beyond RFC 8414's core: OIDC discovery, RFC 9207, CIMD, RFC 8707.
fn extension_members(state: &AppState) -> serde_json::Map<String, Value> {
    let mut extra = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        extra.insert(k.to_string(), v);
    };
    put(
        "authorization_response_iss_parameter_supported",
        json!(true),
    );
    // Advertised only when on: a client that prefers metadata documents would
    // otherwise pick them and fail.
    if state.cimd.is_some() {
        put("client_id_metadata_document_supported", json!(true));
    }
    put("response_modes_supported", json!(["query"]));
    put(
        "revocation_endpoint_auth_methods_supported",
        json!(["none", "client_secret_post", "client_secret_basic"]),
    );
    put(
        "introspection_endpoint_auth_methods_supported",
        json!(["client_secret_post", "client_secret_basic"]),
    );
    put("subject_types_supported", json!(["public"]));
    put("id_token_signing_alg_values_supported", json!(["ES256"]));
    put(
        "claims_supported",
        json!([
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "preferred_username",
            "name",
            "email",
            "roles"
        ]),
    );
    put(
        "prompt_values_supported",
        json!(["none", "login", "consent"]),
    );
    put("request_parameter_supported", json!(false));
    put("request_uri_parameter_supported", json!(false));
    put("protected_resources", json!(state.resources));
    extra
}

pub fn document(state: &AppState) -> AuthorizationServerMetadata {
    let issuer = &state.issuer;
    AuthorizationServerMetadata {
        issuer: issuer.clone(),
        authorization_endpoint: Some(format!("{issuer}/authorize")),
        token_endpoint: Some(format!("{issuer}/token")),
        jwks_uri: Some(format!("{issuer}/jwks.json")),
        registration_endpoint: state
            .settings
            .registration
            .enabled
            .then(|| format!("{issuer}/register")),
        revocation_endpoint: Some(format!("{issuer}/revoke")),
        introspection_endpoint: Some(format!("{issuer}/introspect")),
        revocation_feed_endpoint: Some(format!("{issuer}/revocations")),
        userinfo_endpoint: Some(format!("{issuer}/userinfo")),
        scopes_supported: scope_policy::supported_scopes(),
        response_types_supported: vec!["code".into()],
        grant_types_supported: state.settings.grant_types_supported(),
        code_challenge_methods_supported: vec!["S256".into()],
        token_endpoint_auth_methods_supported: vec![
            "none".into(),
            "client_secret_post".into(),
            "client_secret_basic".into(),
        ],
        extra: extension_members(state),
    }
}

/// The path of the issuer URL without a trailing slash ("" for a root issuer).
pub fn issuer_path(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default()
}

fn serve(state: &AppState) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(document(state))
}

pub async fn oauth_metadata(state: web::Data<AppState>) -> HttpResponse {
    serve(&state)
}

/// `/.well-known/oauth-authorization-server/{issuer path}` and the OIDC equivalent.
pub async fn path_inserted(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> AppResult<HttpResponse> {
    let tail = req.match_info().get("tail").unwrap_or("");
    let path = issuer_path(&state.issuer);
    if !path.is_empty() && format!("/{}", tail.trim_end_matches('/')) == path {
        Ok(serve(&state))
    } else {
        Err(AppError::NotFound(
            "no metadata for this issuer path".into(),
        ))
    }
}
