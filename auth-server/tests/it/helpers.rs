use std::collections::BTreeMap;
use std::path::PathBuf;

use auth_server::{Application, Settings};
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::Value;

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const RESOURCE: &str = "http://127.0.0.1:39999/mcp";
pub const REDIRECT: &str = "http://localhost:6274/oauth/callback";

pub struct TestApp {
    pub base: String,
    /// `http://<metrics listener>` (`server.metrics_listen`), when metrics are on.
    pub metrics_base: Option<String>,
    pub http: reqwest::Client,
    pub settings: Settings,
    pub handle: actix_web::dev::ServerHandle,
    _dir: Option<tempfile::TempDir>,
}

/// Settings for a test app on the database `db_path` names: that SQLite file, or
/// with `AUTH_TEST_BACKEND=postgres` a fresh PostgreSQL schema of its own (the
/// same one for every call with the same path, so a restart finds its data),
/// dropped when the test ends.
pub fn test_settings(db_path: &std::path::Path) -> Settings {
    let mut s = settings_on("");
    s.database.path = db_path.display().to_string();
    if postgres_backend() {
        s.database.url = postgres_database_for(db_path);
    }
    s
}

/// Settings for a test app on the database `url` (`""`: `database.path`).
pub fn settings_on(url: &str) -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".into();
    s.server.metrics_listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.database.url = url.into();
    s.oauth.resources = vec![RESOURCE.into(), "http://127.0.0.1:39998/other".into()];
    s.demo.enabled = true;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let mut settings = test_settings(&db);
    tweak(&mut settings);
    let mut app = start(settings).await;
    app._dir = Some(dir);
    app
}

/// Starts an app on `settings` (the issuer is set to the bound address when the
/// listen port is 0 and the issuer is the default).
pub async fn start(mut settings: Settings) -> TestApp {
    assert!(
        !postgres_backend() || settings.database_url().starts_with("postgres"),
        "with AUTH_TEST_BACKEND=postgres every test app runs on PostgreSQL"
    );
    // Bind first to learn the port, then set the issuer to match.
    if settings.server.issuer == Settings::default().server.issuer {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        settings.server.listen = format!("127.0.0.1:{port}");
        settings.server.issuer = format!("http://127.0.0.1:{port}");
    }
    let app = Application::build(settings.clone())
        .await
        .expect("app builds");
    let base = format!("http://{}", app.local_addr());
    let metrics_base = app.metrics_addr().map(|a| format!("http://{a}"));
    let handle = app.handle();
    tokio::spawn(app.server());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        base,
        metrics_base,
        http,
        settings,
        handle,
        _dir: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn issuer(&self) -> String {
        self.settings.server.issuer.clone()
    }

    pub async fn stop(self) -> Option<tempfile::TempDir> {
        self.handle.stop(true).await;
        self._dir
    }

    /// Registers a public native client (like MCP Inspector).
    pub async fn register_public(&self, redirect_uris: &[&str]) -> Value {
        let res = self
            .http
            .post(self.url("/register"))
            .json(&serde_json::json!({
                "client_name": "Test Client",
                "redirect_uris": redirect_uris,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
                "scope": ""
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }

    pub async fn client_credentials(&self, scope: Option<&str>) -> Value {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let res = self
            .http
            .post(self.url("/token"))
            .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn introspect(&self, token: &str) -> Value {
        let res = self
            .http
            .post(self.url("/introspect"))
            .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url("/token"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Exchanges a code for tokens, asserting success.
    pub async fn exchange(&self, client_id: &str, code: &str) -> Value {
        let res = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("client_id", client_id),
                ("resource", RESOURCE),
            ])
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        res.json().await.unwrap()
    }

    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> Response {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ])
        .await
    }
}

/// A browser: keeps cookies by hand.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
    /// The client address a trusted proxy reports for this browser (`X-Forwarded-For`;
    /// counts only when the app trusts 127.0.0.1 as a proxy).
    pub forwarded_for: Option<String>,
}

impl Browser {
    pub fn absorb(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let s = v.to_str().unwrap();
            let pair = s.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies
                .insert(name.trim().to_string(), value.trim().to_string());
        }
    }

    /// A browser behind the trusted proxy at this client address.
    pub fn at(address: &str) -> Browser {
        Browser {
            forwarded_for: Some(address.into()),
            ..Browser::default()
        }
    }

    fn with_address(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.forwarded_for {
            Some(address) => request.header("x-forwarded-for", address),
            None => request,
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, app: &TestApp, url: &str) -> (StatusCode, HeaderMap, String) {
        let res = self
            .with_address(app.http.get(url).header(COOKIE, self.cookie_header()))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        self.absorb(&headers);
        (status, headers, res.text().await.unwrap())
    }

    pub async fn post_form(
        &mut self,
        app: &TestApp,
        path: &str,
        form: &[(String, String)],
    ) -> (StatusCode, HeaderMap, String) {
        let request = app
            .http
            .post(app.url(path))
            .header(COOKIE, self.cookie_header());
        let res = self.with_address(request).form(form).send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        self.absorb(&headers);
        (status, headers, res.text().await.unwrap())
    }
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The single form of a page: its action and hidden fields.
pub fn parse_form(html: &str) -> (String, Vec<(String, String)>) {
    assert_eq!(
        html.matches("<form method=\"post\"").count(),
        1,
        "exactly one form: {html}"
    );
    let form_start = html.find("<form").unwrap();
    let form_tag_end = html[form_start..].find('>').unwrap() + form_start;
    let action = attr(&html[form_start..form_tag_end], "action").unwrap();
    let mut fields = Vec::new();
    let mut rest = &html[form_start..];
    while let Some(i) = rest.find("<input type=\"hidden\"") {
        let end = rest[i..].find('>').unwrap() + i;
        let tag = &rest[i..end];
        fields.push((
            attr(tag, "name").unwrap(),
            attr(tag, "value").unwrap_or_default(),
        ));
        rest = &rest[end..];
    }
    (action, fields)
}

pub fn authorize_url(app: &TestApp, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", client_id);
        q.append_pair("redirect_uri", REDIRECT);
        q.append_pair("state", "xyz-state");
        q.append_pair("code_challenge", CHALLENGE);
        q.append_pair("code_challenge_method", "S256");
        q.append_pair("resource", RESOURCE);
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Query parameters of a redirect `Location`.
pub fn location_params(headers: &HeaderMap) -> BTreeMap<String, String> {
    let loc = headers
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap();
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

pub fn location(headers: &HeaderMap) -> String {
    headers
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_string()
}

fn relative(action: &str) -> String {
    format!("/{}", action.trim_start_matches('/'))
}

/// Submits the login form on `html` with the given credentials.
pub async fn submit_login(
    app: &TestApp,
    browser: &mut Browser,
    html: &str,
    user: &str,
    password: &str,
) -> (StatusCode, HeaderMap, String) {
    let (action, mut fields) = parse_form(html);
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), password.into()));
    browser.post_form(app, &relative(&action), &fields).await
}

pub async fn submit_consent(
    app: &TestApp,
    browser: &mut Browser,
    html: &str,
    decision: &str,
) -> (StatusCode, HeaderMap, String) {
    let (action, mut fields) = parse_form(html);
    assert!(html.contains("name=\"decision\" value=\"approve\""));
    fields.push(("decision".into(), decision.into()));
    browser.post_form(app, &relative(&action), &fields).await
}

/// Runs authorize → login → consent (approve) and returns the redirect's params.
pub async fn obtain_code(
    app: &TestApp,
    browser: &mut Browser,
    client_id: &str,
    extra: &[(&str, &str)],
    user: &str,
    password: &str,
) -> BTreeMap<String, String> {
    let (status, headers, body) = browser
        .get(app, &authorize_url(app, client_id, extra))
        .await;
    let (status, headers, body) = if status == StatusCode::OK && body.contains("name=\"password\"")
    {
        submit_login(app, browser, &body, user, password).await
    } else {
        (status, headers, body)
    };
    let (status, headers) = if status == StatusCode::OK && body.contains("value=\"approve\"") {
        let (s, h, _) = submit_consent(app, browser, &body, "approve").await;
        (s, h)
    } else {
        (status, headers)
    };
    assert!(
        status.is_redirection(),
        "expected a redirect, got {status}: {body}"
    );
    location_params(&headers)
}

pub fn decode_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub fn decode_header(jwt: &str) -> Value {
    use base64::Engine as _;
    let h = jwt.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Whether the apps of these tests run on PostgreSQL (`AUTH_TEST_BACKEND=postgres`)
/// rather than on SQLite files (`sqlite`, the default).
pub fn postgres_backend() -> bool {
    match std::env::var("AUTH_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("AUTH_TEST_BACKEND={other:?}: use sqlite or postgres"),
    }
}

/// The test schemas made for `test_settings`, by the path that names them.
static POSTGRES_SCHEMAS: std::sync::Mutex<BTreeMap<PathBuf, String>> =
    std::sync::Mutex::new(BTreeMap::new());

/// The URL of the PostgreSQL schema standing in for the SQLite file `path`: made on
/// first use, dropped when the test's runtime shuts down (the test ended). A schema
/// of its own rather than a database: as fresh, and dropping a database forces a
/// checkpoint (about a second each, on the whole server).
fn postgres_database_for(path: &std::path::Path) -> String {
    let mut made = POSTGRES_SCHEMAS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(url) = made.get(path) {
        return url.clone();
    }
    let runtime = tokio::runtime::Handle::try_current()
        .expect("test_settings with AUTH_TEST_BACKEND=postgres runs inside a tokio test");
    // Synchronous, on a thread of its own (this one may be the test's only
    // runtime thread).
    let (admin_url, name, url) = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(postgres_schema("auth_it"))
    })
    .join()
    .unwrap();
    made.insert(path.to_path_buf(), url.clone());
    drop_at_the_end(
        &runtime,
        DropScratch {
            admin_url,
            scratch: Scratch::Schema(name),
            path: Some(path.to_path_buf()),
        },
    );
    url
}

/// A fresh PostgreSQL database for this test, dropped when the test ends; `None`
/// when skipped (see [`create_postgres_database`]). Returns its URL.
pub async fn postgres_test_database(prefix: &str) -> Option<String> {
    let (admin_url, name, url) = create_postgres_database(prefix).await?;
    drop_at_the_end(
        &tokio::runtime::Handle::current(),
        DropScratch {
            admin_url,
            scratch: Scratch::Database(name),
            path: None,
        },
    );
    Some(url)
}

/// Keeps `dropper` in a task of the test's runtime: the runtime drops it with its
/// other tasks when the test ends, passed or failed.
fn drop_at_the_end(runtime: &tokio::runtime::Handle, dropper: DropScratch) {
    runtime.spawn(async move {
        let _dropper = dropper;
        std::future::pending::<()>().await
    });
}

/// What a test made on the PostgreSQL server.
enum Scratch {
    Database(String),
    Schema(String),
}

/// Drops its database or schema when dropped (at the end of the test that made it).
struct DropScratch {
    admin_url: String,
    scratch: Scratch,
    /// The path it stands in for (`test_settings`).
    path: Option<PathBuf>,
}

impl Drop for DropScratch {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            POSTGRES_SCHEMAS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(path);
        }
        let admin_url = self.admin_url.clone();
        let (schema, name) = match &self.scratch {
            Scratch::Database(name) => (false, name.clone()),
            Scratch::Schema(name) => (true, name.clone()),
        };
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    if schema {
                        drop_postgres_schema(&admin_url, &name).await
                    } else {
                        drop_postgres_database(&admin_url, &name).await
                    }
                })
        })
        .join();
        if dropped.is_err() {
            eprintln!("dropping the test database or schema failed");
        }
    }
}

/// The server the PostgreSQL test databases are made on (`AUTH_TEST_POSTGRES_URL`,
/// else the local trust-auth server), and whether it was configured.
fn postgres_admin_url() -> (String, bool) {
    match std::env::var("AUTH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => (url, true),
        _ => ("postgres://postgres@127.0.0.1:5432/test".into(), false),
    }
}

/// A connection to the server of [`postgres_admin_url`], and its URL; `None` (with
/// a note) when it does not answer and `required` is false.
async fn admin_connection(required: bool) -> Option<(sqlx::PgConnection, String)> {
    use sqlx::Connection;
    let (admin_url, configured) = postgres_admin_url();
    let required = required || configured;
    let connect = sqlx::PgConnection::connect(&admin_url);
    match tokio::time::timeout(std::time::Duration::from_secs(3), connect).await {
        Ok(Ok(conn)) => Some((conn, admin_url)),
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 3 s".into(),
            };
            assert!(
                !required,
                "PostgreSQL at {admin_url} is required (AUTH_TEST_POSTGRES_URL or \
                 AUTH_TEST_BACKEND=postgres) but not reachable: {why}"
            );
            eprintln!(
                "PostgreSQL at {admin_url} not reachable ({why}): skipping its run \
                 (set AUTH_TEST_POSTGRES_URL to require it)"
            );
            None
        }
    }
}

/// A fresh PostgreSQL database named `<prefix>_<random>` on the server of
/// `AUTH_TEST_POSTGRES_URL`: when that is set (or `AUTH_TEST_BACKEND=postgres`),
/// the server must answer (else the test fails). When it is not set, the local
/// trust-auth server is tried, and `None` (with a note) when it does not answer:
/// the PostgreSQL runs are then a bonus on machines that have one. Returns the
/// admin URL, the database name and the database's own URL; drop it with
/// [`drop_postgres_database`].
pub async fn create_postgres_database(prefix: &str) -> Option<(String, String, String)> {
    use sqlx::Connection;
    let (mut admin, admin_url) = admin_connection(postgres_backend()).await?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    Some((admin_url, name, url))
}

/// A fresh schema named `<prefix>_<random>` in the database of the admin URL (the
/// server must answer). Returns the admin URL, the schema name and a URL whose
/// connections use only that schema (`search_path`) and carry its name
/// (`application_name`, so that [`drop_postgres_schema`] can end them).
async fn postgres_schema(prefix: &str) -> (String, String, String) {
    use sqlx::Connection;
    let (mut admin, admin_url) = admin_connection(true)
        .await
        .expect("PostgreSQL for AUTH_TEST_BACKEND=postgres");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let separator = if admin_url.contains('?') { '&' } else { '?' };
    let url = format!("{admin_url}{separator}options[search_path]={name}&application_name={name}");
    (admin_url, name, url)
}

/// Drops a database made by [`create_postgres_database`], closing its connections.
pub async fn drop_postgres_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// A Redis for the shared rate limits, with a key prefix of its own for one test: the
/// server of `AUTH_TEST_REDIS_URL` when that is set (it must answer, else the test
/// fails), else the local one at 127.0.0.1:6379, and `None` (with a note) when that
/// does not answer, as for PostgreSQL above. Dropping it deletes the test's keys.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

pub async fn test_redis(test: &str) -> Option<TestRedis> {
    let configured = std::env::var("AUTH_TEST_REDIS_URL").ok();
    let url = configured
        .clone()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    let why = match tokio::time::timeout(std::time::Duration::from_secs(3), ping).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 3 s".into()),
    };
    if let Some(why) = why {
        assert!(
            configured.is_none(),
            "AUTH_TEST_REDIS_URL is set but Redis at {url} is not reachable: {why}"
        );
        eprintln!(
            "Redis at {url} not reachable ({why}): skipping {test} \
             (set AUTH_TEST_REDIS_URL to require it)"
        );
        return None;
    }
    let prefix = format!("auth-test:{test}:{}", uuid::Uuid::new_v4().simple());
    Some(TestRedis { url, prefix })
}

impl TestRedis {
    /// The keys the test's servers wrote (`SCAN`, never `KEYS`).
    pub fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client
            .get_connection_with_timeout(std::time::Duration::from_secs(3))
            .unwrap();
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = redis::Commands::scan_match(&mut conn, &pattern)
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        keys
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // Keys expire once their budgets are full again; deleting them keeps a shared
        // Redis clean right away, also after a failed assertion.
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(std::time::Duration::from_secs(3))
        else {
            return;
        };
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = match redis::Commands::scan_match(&mut conn, &pattern) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::Commands::del(&mut conn, keys);
        }
    }
}

/// Drops a schema made by [`postgres_schema`] with everything in it, after ending
/// the connections made for it (one in a transaction would hold its locks).
async fn drop_postgres_schema(admin_url: &str, name: &str) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
}

/// A connection of its own to the database `settings` use (the SQLite file or the
/// PostgreSQL database), to look at or change stored rows behind the server's back.
pub async fn raw_connection(settings: &Settings) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&settings.database_url())
        .await
        .unwrap()
}
