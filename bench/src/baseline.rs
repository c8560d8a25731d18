//! The baseline server: `POST` a JSON-RPC request anywhere, get a fixed `tools/call`
//! result back. With a [`Es256Verifier`] it first verifies the bearer token once
//! (signature, `exp`/`nbf`, and `iss`/`aud` when configured), without any cache.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use shared::AccessTokenClaims;

/// The `result` of every answer: what a trivial `hello_world` tool returns.
pub const FIXED_RESULT: &str =
    r#"{"content":[{"type":"text","text":"Hello, bench! (baseline)"}],"isError":false}"#;

/// The body of a JSON-RPC request. `params` is parsed (as a real server must) and
/// then ignored.
#[derive(Debug, Deserialize)]
pub struct RpcRequest {
    pub jsonrpc: String,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    pub method: String,
    #[serde(default)]
    pub params: Option<serde_json::Value>,
}

/// One ES256 verification per request: keys by `kid`, `exp`/`nbf` always,
/// `iss` and `aud` when given.
pub struct Es256Verifier {
    keys: HashMap<String, DecodingKey>,
    /// Used when the token has no `kid` or only one key is known.
    single: Option<DecodingKey>,
    validation: Validation,
}

impl Es256Verifier {
    pub fn new(
        keys: Vec<(Option<String>, DecodingKey)>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> anyhow::Result<Self> {
        if keys.is_empty() {
            anyhow::bail!("no ES256 verification key given");
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 60;
        validation.validate_nbf = true;
        match issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&["exp"]);
        let single = if keys.len() == 1 {
            keys.first().map(|(_, k)| k.clone())
        } else {
            None
        };
        let keys = keys
            .into_iter()
            .filter_map(|(kid, key)| kid.map(|kid| (kid, key)))
            .collect();
        Ok(Es256Verifier {
            keys,
            single,
            validation,
        })
    }

    /// Keys from a JWKS document (only EC P-256 keys are kept).
    pub fn from_jwks(
        jwks: &JwkSet,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for jwk in &jwks.keys {
            if let jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) = &jwk.algorithm {
                keys.push((jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk)?));
            }
        }
        Self::new(keys, issuer, audience)
    }

    /// Loads keys from a JWKS URL (`http(s)://...`) or a PEM file (SPKI public key).
    pub async fn load(
        source: &str,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> anyhow::Result<Self> {
        if source.starts_with("http://") || source.starts_with("https://") {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?;
            let jwks: JwkSet = client
                .get(source)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            Self::from_jwks(&jwks, issuer, audience)
        } else {
            let pem = std::fs::read(source)
                .map_err(|e| anyhow::anyhow!("cannot read PEM file {source}: {e}"))?;
            Self::new(
                vec![(None, DecodingKey::from_ec_pem(&pem)?)],
                issuer,
                audience,
            )
        }
    }

    /// One full verification: header, key lookup, ES256 signature, claims.
    pub fn verify(&self, token: &str) -> Result<AccessTokenClaims, jsonwebtoken::errors::Error> {
        let header = jsonwebtoken::decode_header(token)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .or(self.single.as_ref())
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
        jsonwebtoken::decode::<AccessTokenClaims>(token, key, &self.validation).map(|d| d.claims)
    }
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn rpc_error(status: actix_web::http::StatusCode, code: i32, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(format!(
            r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{code},"message":"{message}"}}}}"#
        ))
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    verifier: web::Data<Option<Arc<Es256Verifier>>>,
) -> HttpResponse {
    if let Some(verifier) = verifier.get_ref() {
        let ok = bearer(&req)
            .map(|t| verifier.verify(t).is_ok())
            .unwrap_or(false);
        if !ok {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#))
                .finish();
        }
    }
    let rpc: RpcRequest = match serde_json::from_slice(&body) {
        Ok(rpc) => rpc,
        Err(_) => {
            return rpc_error(
                actix_web::http::StatusCode::BAD_REQUEST,
                -32700,
                "parse error",
            )
        }
    };
    if rpc.jsonrpc != "2.0" || rpc.method.is_empty() {
        return rpc_error(
            actix_web::http::StatusCode::BAD_REQUEST,
            -32600,
            "invalid request",
        );
    }
    let _ = &rpc.params;
    match rpc.id {
        // A notification: accepted, nothing to answer.
        None => HttpResponse::Accepted().finish(),
        Some(id) => {
            let id = serde_json::to_string(&id).unwrap_or_else(|_| "null".into());
            HttpResponse::Ok()
                .content_type("application/json")
                .body(format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{FIXED_RESULT}}}"#
                ))
        }
    }
}

async fn ready() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// A bound, not yet running baseline server.
pub struct Baseline {
    server: Server,
    port: u16,
}

impl Baseline {
    /// Binds `listen` (port 0 allowed) with `workers` actix workers and `tcp_nodelay`.
    pub fn build(
        listen: &str,
        workers: usize,
        verifier: Option<Es256Verifier>,
    ) -> anyhow::Result<Baseline> {
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let verifier = web::Data::new(verifier.map(Arc::new));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(verifier.clone())
                .app_data(web::PayloadConfig::new(1024 * 1024))
                .route("/readyz", web::get().to(ready))
                .route("/healthz", web::get().to(ready))
                .default_service(web::post().to(handle))
        })
        .workers(workers.max(1))
        .tcp_nodelay(true)
        .backlog(4096)
        .shutdown_timeout(2)
        .listen(listener)?
        .run();
        Ok(Baseline { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The actix server; spawn it and keep its handle to stop it.
    pub fn server(self) -> Server {
        self.server
    }
}
