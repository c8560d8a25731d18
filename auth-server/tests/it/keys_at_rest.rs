//! Secret keys at rest: with a key-encryption key (KEK) configured, the database
//! holds the signing keys' private parts and the cookie key only sealed; restarts
//! with the same KEK keep everything, a wrong KEK stops the start, `keys rewrap`
//! moves every secret to a new KEK, and a plaintext database is sealed on start.

use std::path::{Path, PathBuf};

use auth_server::domain::key_encryption::{KeyEncryption, KeyEncryptionKey, SecretSlot};
use auth_server::{Application, Settings};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// A KEK file in `dir` (`openssl rand -base64 32` style) and the key it holds.
fn kek_file(dir: &Path, name: &str, byte: u8) -> (PathBuf, KeyEncryptionKey) {
    let text = format!("{}\n", STANDARD.encode([byte; 32]));
    let path = dir.join(name);
    std::fs::write(&path, &text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (path, KeyEncryptionKey::from_base64(&text).unwrap())
}

fn with_kek(settings: &Settings, kek: Option<&Path>) -> Settings {
    let mut s = settings.clone();
    s.secrets.key_file = kek.map(|p| p.display().to_string()).unwrap_or_default();
    s
}

/// The stored secrets, read from the database directly: (kid, private_pkcs8,
/// public_key) of every signing key, and the cookie key.
async fn stored(settings: &Settings) -> (Vec<(String, String, String)>, String) {
    use sqlx::Connection as _;
    let mut conn = raw_connection(settings).await;
    let keys = sqlx::query_as(
        "SELECT kid, private_pkcs8, public_key FROM signing_keys ORDER BY created_at, kid",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let (cookie,): (String,) = sqlx::query_as("SELECT value FROM kv WHERE key = 'cookie_key'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    (keys, cookie)
}

async fn assert_sealed_under(settings: &Settings, kek: &KeyEncryptionKey) {
    let prefix = format!("v1:{}:", kek.id());
    let (keys, cookie) = stored(settings).await;
    for (kid, private, _) in &keys {
        assert!(private.starts_with(&prefix), "key {kid} is {private:.12}…");
    }
    assert!(cookie.starts_with(&prefix), "cookie key is {cookie:.12}…");
}

/// The database as bytes: the SQLite file and its WAL; on PostgreSQL (no file of
/// ours) every stored value of the tables that hold secrets.
async fn database_bytes(settings: &Settings) -> Vec<u8> {
    if postgres_backend() {
        let mut conn = raw_connection(settings).await;
        let mut bytes = Vec::new();
        for sql in [
            "SELECT kid || alg || private_pkcs8 || public_key FROM signing_keys",
            "SELECT key || value FROM kv",
        ] {
            let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
            assert!(!rows.is_empty(), "{sql}");
            for (text,) in rows {
                bytes.extend(text.into_bytes());
            }
        }
        return bytes;
    }
    let db = Path::new(&settings.database.path);
    let mut bytes = std::fs::read(db).unwrap();
    for suffix in ["-wal", "-shm"] {
        let mut side = db.as_os_str().to_owned();
        side.push(suffix);
        if let Ok(more) = std::fs::read(PathBuf::from(side)) {
            bytes.extend(more);
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn jwks(app: &TestApp) -> JwkSet {
    app.http
        .get(app.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Whether `token` verifies with the key its `kid` names in `jwks`.
fn verifies(jwks: &JwkSet, token: &str) -> bool {
    let kid = decode_header(token)["kid"].as_str().unwrap().to_string();
    let Some(jwk) = jwks.find(&kid) else {
        return false;
    };
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).is_ok()
}

async fn access_token(app: &TestApp) -> String {
    app.client_credentials(None).await["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs the server once on `settings` with `kek`: it creates the signing key and
/// the cookie key and signs a token, which is returned.
async fn first_run(settings: &Settings, kek: Option<&Path>) -> String {
    let app = start(with_kek(settings, kek)).await;
    let token = access_token(&app).await;
    app.stop().await;
    token
}

async fn build_error(settings: Settings) -> String {
    match Application::build(settings).await {
        Ok(_) => panic!("the server started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn the_database_holds_no_private_key_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let (kek_path, kek) = kek_file(dir.path(), "kek", 1);
    let settings = test_settings(&db);
    first_run(&settings, Some(&kek_path)).await;

    assert_sealed_under(&settings, &kek).await;
    let enc = KeyEncryption::new(kek, Vec::new());
    let (keys, cookie) = stored(&settings).await;
    let bytes = database_bytes(&settings).await;
    for (kid, private, public) in &keys {
        let pkcs8_b64 = enc
            .open(&SecretSlot::SigningKey(kid.clone()), private)
            .unwrap()
            .value;
        let pkcs8 = STANDARD.decode(pkcs8_b64.expose()).unwrap();
        // It is the real key: its public half is the published one.
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8).unwrap();
        assert_eq!(STANDARD.encode(pair.public_key().as_ref()), *public);
        assert!(!contains(&bytes, pkcs8_b64.expose().as_bytes()));
        assert!(!contains(&bytes, &pkcs8));
    }
    let cookie_key = enc
        .open(&SecretSlot::Setting("cookie_key".into()), &cookie)
        .unwrap()
        .value;
    assert!(!contains(&bytes, cookie_key.expose().as_bytes()));
}

#[tokio::test]
async fn a_restart_with_the_same_key_keeps_tokens_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let (kek_path, kek) = kek_file(dir.path(), "kek", 2);
    let settings = with_kek(&test_settings(&db), Some(&kek_path));
    let app = start(settings.clone()).await;
    let token = access_token(&app).await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    app.stop().await;
    let before = stored(&settings).await;

    let app = start(settings.clone()).await;
    assert!(verifies(&jwks(&app).await, &token));
    // The sealed session cookie still opens: same cookie key, straight redirect.
    let (status, headers, _) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(location_params(&headers).contains_key("code"));
    app.stop().await;
    assert_eq!(
        stored(&settings).await,
        before,
        "no new key, nothing re-sealed"
    );
    assert_sealed_under(&settings, &kek).await;
}

#[tokio::test]
async fn a_wrong_or_missing_key_stops_start_up_and_replaces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let (right, right_kek) = kek_file(dir.path(), "right", 3);
    let (wrong, _) = kek_file(dir.path(), "wrong", 4);
    let settings = test_settings(&db);
    first_run(&settings, Some(&right)).await;
    let before = stored(&settings).await;

    for kek in [Some(wrong.as_path()), None] {
        let message = build_error(with_kek(&settings, kek)).await;
        assert!(message.contains("secrets.key_file"), "{message}");
        assert!(message.contains(right_kek.id()), "{message}");
        assert!(message.contains("refusing to start"), "{message}");
        assert_eq!(
            stored(&settings).await,
            before,
            "no new signing key or cookie key"
        );
    }
    let mut required = settings.clone();
    required.secrets.required = true;
    let message = build_error(required).await;
    assert!(message.contains("secrets.key_file"), "{message}");

    // A sealed value copied to another row does not open there.
    let store = auth_server::storage::open(&settings.database_url(), 1)
        .await
        .unwrap();
    let enc = auth_server::service::keys_at_rest::key_encryption(
        &with_kek(&settings, Some(&right)).secrets,
    )
    .unwrap();
    auth_server::cli::rotate_keys(store.as_ref(), &enc)
        .await
        .unwrap();
    drop(store);
    let mut conn = raw_connection(&settings).await;
    sqlx::query(
        "UPDATE signing_keys SET private_pkcs8 = \
         (SELECT private_pkcs8 FROM signing_keys WHERE retired_at IS NOT NULL) \
         WHERE retired_at IS NULL",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let message = build_error(with_kek(&settings, Some(&right))).await;
    assert!(message.contains("copied from another row"), "{message}");
    assert!(message.contains("secrets.key_file"), "{message}");
}

fn cli(settings: &Settings, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_auth-server"));
    command.arg("--db").arg(settings.database_url()).args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[tokio::test]
async fn rewrap_moves_every_secret_to_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let (old, old_kek) = kek_file(dir.path(), "old", 5);
    let (new, new_kek) = kek_file(dir.path(), "new", 6);
    let settings = test_settings(&db);
    let token = first_run(&settings, Some(&old)).await;
    assert_sealed_under(&settings, &old_kek).await;

    // The new key from the environment (containers without files), the old one
    // from its file.
    let new_text = std::fs::read_to_string(&new).unwrap();
    let env = [
        ("AUTH__SECRETS__KEY", new_text.trim()),
        ("AUTH__SECRETS__PREVIOUS_KEY_FILES", old.to_str().unwrap()),
    ];
    let out = cli(&settings, &env, &["keys", "rewrap"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("re-encrypted 2 stored secret(s)"),
        "{stdout}"
    );
    assert_sealed_under(&settings, &new_kek).await;
    let out = cli(&settings, &env, &["keys", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("v1:{}", new_kek.id())));
    // Again with only the new key: nothing is left under the old one.
    let out = cli(
        &settings,
        &[("AUTH__SECRETS__KEY_FILE", new.to_str().unwrap())],
        &["keys", "rewrap"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted 0"));

    let message = build_error(with_kek(&settings, Some(&old))).await;
    assert!(message.contains("secrets.key_file"), "{message}");
    let app = start(with_kek(&settings, Some(&new))).await;
    assert!(verifies(&jwks(&app).await, &token));
    assert!(verifies(&jwks(&app).await, &access_token(&app).await));
    app.stop().await;
}

#[tokio::test]
async fn a_plaintext_database_is_sealed_on_the_first_start_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let (kek_path, kek) = kek_file(dir.path(), "kek", 7);
    let settings = test_settings(&db);
    let app = start(settings.clone()).await;
    let token = access_token(&app).await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    app.stop().await;
    let (plain_keys, plain_cookie) = stored(&settings).await;
    assert!(!plain_keys[0].1.contains(':') && !plain_cookie.contains(':'));

    let app = start(with_kek(&settings, Some(&kek_path))).await;
    assert_sealed_under(&settings, &kek).await;
    let (keys, _) = stored(&settings).await;
    assert_eq!(keys.len(), 1, "the same key, sealed, not a new one");
    assert_eq!(keys[0].0, plain_keys[0].0);
    assert!(verifies(&jwks(&app).await, &token));
    let (status, _, _) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::FOUND, "the cookie key is the same");
    app.stop().await;
}
