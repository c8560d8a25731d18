//! Test support: a fake OAuth authorization server on 127.0.0.1:0.
//!
//! It serves RFC 8414 metadata, a JWKS with one ES256 key, and an RFC 7662
//! introspection endpoint that answers from the tokens it minted. Tests mint
//! tokens with it, take it down, rotate its key and count its JWKS / introspection
//! hits to prove what the verifier cached.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// Client credentials the fake AS accepts at `/introspect` (client_secret_basic).
pub const RS_CLIENT_ID: &str = "rs-client";
pub const RS_CLIENT_SECRET: &str = "rs-secret";

/// An ES256 signing key with its published JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    /// Uncompressed SEC1 point `04 || x || y`: what a naive verifier would use as an
    /// HMAC secret in a key-confusion attack.
    public_point: Vec<u8>,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("parse P-256 key");
        let point = pair.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65);
        assert_eq!(point[0], 4);
        let kid = shared::secret::random_token(12);
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "kid": kid,
            "alg": "ES256",
            "use": "sig",
        });
        SigningKey {
            kid,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            public_point: point,
            jwk,
        }
    }
}

/// An Ed25519 key (published next to the primary ES256 key once created).
struct EdKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl EdKey {
    fn generate() -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse Ed25519 key");
        let kid = shared::secret::random_token(12);
        let jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        });
        EdKey {
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk,
        }
    }
}

struct FakeState {
    issuer: String,
    key: Mutex<Arc<SigningKey>>,
    ed_key: Mutex<Option<Arc<EdKey>>>,
    down: AtomicBool,
    /// Serve the metadata only at the OIDC discovery path (like Auth0 or Entra).
    oidc_only: AtomicBool,
    jwks_hits: AtomicUsize,
    introspection_hits: AtomicUsize,
    /// Introspection answers by token value (minted tokens, overrides, revocations).
    answers: Mutex<HashMap<String, Value>>,
    /// Advertise and serve a revocation feed (`/revocations`).
    feed: AtomicBool,
    /// The feed's entries in order: (`"grants"` or `"jtis"`, id, exp).
    revocations: Mutex<Vec<(&'static str, String, i64)>>,
}

/// A running fake authorization server. Stops when dropped.
pub struct FakeAs {
    state: Arc<FakeState>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeAs {
    fn drop(&mut self) {
        // `stop` sends the command synchronously; the returned future only waits.
        drop(self.handle.stop(false));
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

impl FakeAs {
    /// Starts the fake AS on 127.0.0.1 with a random port.
    pub async fn start() -> FakeAs {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let issuer = format!("http://127.0.0.1:{port}");
        let state = Arc::new(FakeState {
            issuer,
            key: Mutex::new(Arc::new(SigningKey::generate())),
            ed_key: Mutex::new(None),
            down: AtomicBool::new(false),
            oidc_only: AtomicBool::new(false),
            jwks_hits: AtomicUsize::new(0),
            introspection_hits: AtomicUsize::new(0),
            answers: Mutex::new(HashMap::new()),
            feed: AtomicBool::new(false),
            revocations: Mutex::new(Vec::new()),
        });
        let handle = serve(&state, listener);
        FakeAs { state, handle }
    }

    /// Stops serving: connections are refused, as when the AS process is down.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    /// Serves again on the same address, with the same keys and tokens (after
    /// [`stop`](Self::stop)).
    pub fn restart(&mut self) {
        let address = self.state.issuer.trim_start_matches("http://");
        let listener = std::net::TcpListener::bind(address).expect("bind the AS address again");
        self.handle = serve(&self.state, listener);
    }
}

/// Serves the fake AS of `state` on `listener`.
fn serve(state: &Arc<FakeState>, listener: std::net::TcpListener) -> actix_web::dev::ServerHandle {
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/.well-known/oauth-authorization-server",
                web::get().to(metadata),
            )
            .route(
                "/.well-known/openid-configuration",
                web::get().to(openid_configuration),
            )
            .route("/jwks.json", web::get().to(jwks))
            .route("/introspect", web::post().to(introspect))
            .route("/revocations", web::get().to(revocations))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    handle
}

impl FakeAs {
    /// The issuer (= base URL, no trailing slash), e.g. `http://127.0.0.1:40123`.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    pub fn metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-authorization-server",
            self.state.issuer
        )
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks.json", self.state.issuer)
    }

    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.state.issuer)
    }

    /// The `kid` currently published and used for signing.
    pub fn kid(&self) -> String {
        self.current_key().kid.clone()
    }

    fn current_key(&self) -> Arc<SigningKey> {
        self.state.key.lock().unwrap().clone()
    }

    /// Signs `claims` with ES256, header `kid` + `typ: at+jwt`. The token is also
    /// registered for introspection (active, `token_type: access_token`).
    pub fn mint(&self, claims: Value) -> String {
        let key = self.current_key();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some(shared::claims::ACCESS_TOKEN_TYP.to_string());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("sign ES256");
        self.register(&token, &claims);
        token
    }

    /// A valid access token for `sub` with defaults: iss, aud, exp = now + 600, iat,
    /// jti, client_id `test-client`, scope, preferred_username = sub, roles `["user"]`
    /// (plus `"admin"` when the scope contains `mcp:admin`).
    pub fn token(&self, sub: &str, scope: &str, aud: &str) -> String {
        self.mint(self.claims(sub, scope, aud))
    }

    /// The claims `token` would use, for tests that tweak one field.
    pub fn claims(&self, sub: &str, scope: &str, aud: &str) -> Value {
        let now = now();
        let mut roles = vec!["user"];
        if scope.split(' ').any(|s| s == shared::scopes::MCP_ADMIN) {
            roles.push("admin");
        }
        json!({
            "iss": self.state.issuer,
            "sub": sub,
            "aud": aud,
            "exp": now + 600,
            "iat": now,
            "jti": shared::secret::random_token(16),
            "client_id": "test-client",
            "scope": scope,
            "preferred_username": sub,
            "roles": roles,
        })
    }

    /// Signs with the current ES256 key whatever `header.alg` says (so a test can lie
    /// about the algorithm); `header` is serialised as given (set `kid`/`typ` yourself).
    pub fn mint_with_header(&self, header: Header, claims: Value) -> String {
        let key = self.current_key();
        let message = format!(
            "{}.{}",
            b64_json(&serde_json::to_value(&header).unwrap()),
            b64_json(&claims)
        );
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding, Algorithm::ES256)
            .expect("sign");
        let token = format!("{message}.{sig}");
        self.register(&token, &claims);
        token
    }

    /// An unsigned `alg: none` token (with the current kid).
    pub fn unsigned(&self, claims: Value) -> String {
        let header = json!({"alg": "none", "typ": "at+jwt", "kid": self.kid()});
        format!("{}.{}.", b64_json(&header), b64_json(&claims))
    }

    /// The key-confusion attack: HS256 "signed" with the public key bytes (the
    /// uncompressed EC point a JWK decodes to) as the HMAC secret, with the real kid.
    pub fn hs256_with_public_key(&self, claims: Value) -> String {
        let key = self.current_key();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some(shared::claims::ACCESS_TOKEN_TYP.to_string());
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(&key.public_point),
        )
        .expect("sign HS256")
    }

    /// Signs with an Ed25519 key (`alg: EdDSA`, `typ: at+jwt`), created and published
    /// in the JWKS on first use (so a verifier built before sees an unknown kid).
    pub fn mint_eddsa(&self, claims: Value) -> String {
        let key = self
            .state
            .ed_key
            .lock()
            .unwrap()
            .get_or_insert_with(|| Arc::new(EdKey::generate()))
            .clone();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        header.typ = Some(shared::claims::ACCESS_TOKEN_TYP.to_string());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).expect("sign EdDSA");
        self.register(&token, &claims);
        token
    }

    /// Generates a new key (new kid); the old key is no longer published.
    pub fn rotate_key(&self) {
        *self.state.key.lock().unwrap() = Arc::new(SigningKey::generate());
    }

    /// When down, `/jwks.json` and `/introspect` answer 503 (metadata still answers).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Metadata only at `/.well-known/openid-configuration` (the RFC 8414 path
    /// answers 404), as Auth0 and Entra do. Default: RFC 8414 only.
    pub fn set_oidc_only(&self, oidc_only: bool) {
        self.state.oidc_only.store(oidc_only, Ordering::SeqCst);
    }

    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn introspection_hits(&self) -> usize {
        self.state.introspection_hits.load(Ordering::SeqCst)
    }

    /// From now on `/introspect` answers `{"active": false}` for this token.
    pub fn revoke(&self, token: &str) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_string(), json!({"active": false}));
    }

    /// Replaces the introspection answer for `token` (any token string, JWT or opaque).
    pub fn set_introspection_answer(&self, token: &str, answer: Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_string(), answer);
    }

    /// Advertise `revocation_feed_endpoint` in the metadata and serve the feed (read
    /// with the RS client credentials; 503 while down).
    pub fn enable_revocation_feed(&self) {
        self.state.feed.store(true, Ordering::SeqCst);
    }

    /// Lists grant `sid` in the revocation feed until `exp`.
    pub fn revoke_grant(&self, sid: &str, exp: i64) {
        self.state
            .revocations
            .lock()
            .unwrap()
            .push(("grants", sid.to_string(), exp));
    }

    fn register(&self, token: &str, claims: &Value) {
        let mut answer = claims.clone();
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("active".into(), Value::Bool(true));
            obj.entry("token_type")
                .or_insert_with(|| json!("access_token"));
            if let Some(u) = claims.get("preferred_username") {
                obj.entry("username").or_insert_with(|| u.clone());
            }
        }
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.to_string(), answer);
    }
}

async fn metadata(state: web::Data<FakeState>) -> HttpResponse {
    if state.oidc_only.load(Ordering::SeqCst) {
        return HttpResponse::NotFound().finish();
    }
    metadata_document(&state)
}

async fn openid_configuration(state: web::Data<FakeState>) -> HttpResponse {
    if !state.oidc_only.load(Ordering::SeqCst) {
        return HttpResponse::NotFound().finish();
    }
    metadata_document(&state)
}

fn metadata_document(state: &FakeState) -> HttpResponse {
    let iss = &state.issuer;
    let mut document = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "registration_endpoint": format!("{iss}/register"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "jwks_uri": format!("{iss}/jwks.json"),
        "scopes_supported": ["mcp:read", "mcp:admin", "openid", "profile", "email", "offline_access"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
    });
    if state.feed.load(Ordering::SeqCst) {
        document["revocation_feed_endpoint"] = json!(format!("{iss}/revocations"));
    }
    HttpResponse::Ok().json(document)
}

/// The revocation feed: the cursor is the number of entries already read.
async fn revocations(
    state: web::Data<FakeState>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if !state.feed.load(Ordering::SeqCst) {
        return HttpResponse::NotFound().finish();
    }
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    if !basic_auth_ok(&req) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let entries = state.revocations.lock().unwrap().clone();
    let since = query
        .get("since")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n <= entries.len())
        .unwrap_or(0);
    let mut page = json!({"cursor": entries.len().to_string(), "grants": [], "jtis": []});
    for (kind, id, exp) in &entries[since..] {
        page[*kind]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": id, "exp": exp}));
    }
    HttpResponse::Ok().json(page)
}

async fn jwks(state: web::Data<FakeState>) -> HttpResponse {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let mut keys = vec![state.key.lock().unwrap().jwk.clone()];
    if let Some(ed) = state.ed_key.lock().unwrap().as_ref() {
        keys.push(ed.jwk.clone());
    }
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

fn basic_auth_ok(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((id, secret)) = decoded.split_once(':') else {
        return false;
    };
    let id: String = url::form_urlencoded::parse(format!("a={id}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .collect();
    let secret: String = url::form_urlencoded::parse(format!("a={secret}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .collect();
    id == RS_CLIENT_ID && secret == RS_CLIENT_SECRET
}

async fn introspect(
    state: web::Data<FakeState>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    state.introspection_hits.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    if !basic_auth_ok(&req) {
        return HttpResponse::Unauthorized()
            .insert_header(("WWW-Authenticate", "Basic realm=\"fake-as\""))
            .json(json!({"error": "invalid_client"}));
    }
    let Some(token) = form.get("token") else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    };
    let answer = state
        .answers
        .lock()
        .unwrap()
        .get(token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    HttpResponse::Ok().json(answer)
}
