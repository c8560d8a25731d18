//! Crash under load: the real `auth-server` binary, busy with concurrent clients
//! that register, exchange authorization codes and refresh, is killed with SIGKILL
//! and started again on the same database. Every client registration and every
//! refresh token it answered with success before the kill still works, and the
//! database holds no half-written grant. Runs on a SQLite file and, when a server
//! answers, on PostgreSQL.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, COOKIE};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::helpers::{
    create_postgres_database, drop_postgres_database, location_params, parse_form, Browser,
    CHALLENGE, REDIRECT, RESOURCE, VERIFIER,
};

/// Concurrent clients.
const CLIENTS: usize = 16;
/// How long the clients load the server before the kill.
const LOAD: Duration = Duration::from_millis(1500);
/// Longer than kill, restart and the checks take together: a refresh whose answer
/// was lost in the crash is retried within the window.
const REFRESH_GRACE_SECS: &str = "300";

/// The database one run uses.
enum Database {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl Database {
    fn sqlite() -> Database {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.db");
        Database::Sqlite { _dir: dir, path }
    }

    /// A fresh database (see `create_postgres_database`); `None` when skipped.
    async fn postgres() -> Option<Database> {
        let (admin_url, name, url) = create_postgres_database("crash").await?;
        Some(Database::Postgres {
            admin_url,
            name,
            url,
        })
    }

    fn configure(&self, cmd: &mut Command) {
        match self {
            Database::Sqlite { path, .. } => cmd.env("AUTH__DATABASE__PATH", path),
            Database::Postgres { url, .. } => cmd.env("AUTH__DATABASE__URL", url),
        };
    }

    /// The counts of the integrity queries, by name.
    async fn integrity(&self) -> Vec<(&'static str, i64)> {
        match self {
            Database::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                INTEGRITY
                    .iter()
                    .map(|(name, sql)| (*name, conn.query_row(sql, [], |r| r.get(0)).unwrap()))
                    .collect()
            }
            Database::Postgres { url, .. } => {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let mut counts = Vec::new();
                for (name, sql) in INTEGRITY {
                    let n: i64 = sqlx::query_scalar(*sql).fetch_one(&mut conn).await.unwrap();
                    counts.push((*name, n));
                }
                conn.close().await.unwrap();
                counts
            }
        }
    }

    async fn drop_database(&self) {
        if let Database::Postgres {
            admin_url, name, ..
        } = self
        {
            drop_postgres_database(admin_url, name).await;
        }
    }
}

/// Rows that a half-written grant or token write would leave behind; every count
/// must be zero. Portable SQL (SQLite and PostgreSQL).
const INTEGRITY: &[(&str, &str)] = &[
    (
        "refresh tokens of a missing grant",
        "SELECT COUNT(*) FROM refresh_tokens r \
         WHERE NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = r.grant_id)",
    ),
    (
        "access tokens of a missing grant",
        "SELECT COUNT(*) FROM access_tokens a WHERE a.grant_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = a.grant_id)",
    ),
    (
        "codes linked to a missing grant",
        "SELECT COUNT(*) FROM auth_codes c WHERE c.grant_id IS NOT NULL \
         AND c.grant_id <> '!replayed' \
         AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.id = c.grant_id)",
    ),
    (
        "user grants without the code they came from",
        "SELECT COUNT(*) FROM grants g WHERE g.user_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM auth_codes c WHERE c.grant_id = g.id)",
    ),
    (
        "grants without an access token",
        "SELECT COUNT(*) FROM grants g \
         WHERE NOT EXISTS (SELECT 1 FROM access_tokens a WHERE a.grant_id = g.id)",
    ),
    (
        "live user grants without exactly one live refresh token",
        "SELECT COUNT(*) FROM grants g WHERE g.user_id IS NOT NULL AND g.revoked_at IS NULL \
         AND (SELECT COUNT(*) FROM refresh_tokens r \
              WHERE r.grant_id = g.id AND r.rotated_at IS NULL) <> 1",
    ),
    (
        "grants of a missing client",
        "SELECT COUNT(*) FROM grants g \
         WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.client_id = g.client_id)",
    ),
    (
        "grants of a missing user",
        "SELECT COUNT(*) FROM grants g WHERE g.user_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = g.user_id)",
    ),
];

/// The `auth-server` binary as a child process; killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts the binary on `port` and `db`, and waits until `/healthz` answers.
    async fn start(db: &Database, port: u16, log: &Path) -> Server {
        let out = File::options().create(true).append(true).open(log).unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_auth-server"));
        cmd.args(["serve", "--demo", "--resource", RESOURCE])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--issuer", &base])
            .env("AUTH__SERVER__METRICS_LISTEN", "off")
            .env("AUTH__RATE_LIMIT__ENABLED", "false")
            .env("AUTH__OAUTH__REFRESH_GRACE_SECS", REFRESH_GRACE_SECS)
            .env("AUTH__SERVER__WORKERS", "2")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        db.configure(&mut cmd);
        let mut server = Server {
            child: cmd.spawn().unwrap(),
            base,
            log: log.to_path_buf(),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("auth-server exited with {status}: {}", server.log_text());
            }
            let health = http.get(format!("{}/healthz", server.base)).send().await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "auth-server did not become healthy: {}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown hook, no flush, no graceful drain.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "the server was killed: {status}");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// Why a client stopped: the server went away (the kill), or it answered wrongly.
enum Stop {
    Down,
    Wrong(String),
}

impl From<reqwest::Error> for Stop {
    fn from(_: reqwest::Error) -> Stop {
        Stop::Down
    }
}

/// One refresh token family as its client knows it: the refresh token the server
/// last answered with.
#[derive(Debug, Clone)]
struct Chain {
    client_id: String,
    refresh_token: String,
}

/// A client application with its user's browser, and what the server acknowledged
/// to it.
struct Client {
    http: reqwest::Client,
    base: String,
    browser: Browser,
    registered: Vec<String>,
    chains: Vec<Chain>,
    /// What the client was doing when the server died.
    doing: &'static str,
}

type Page = (StatusCode, HeaderMap, String);

impl Client {
    fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_string(),
            browser: Browser::default(),
            registered: Vec::new(),
            chains: Vec::new(),
            doing: "nothing",
        }
    }

    async fn send(&mut self, request: RequestBuilder) -> Result<Page, Stop> {
        let res = request
            .header(COOKIE, self.browser.cookie_header())
            .send()
            .await?;
        let status = res.status();
        let headers = res.headers().clone();
        self.browser.absorb(&headers);
        Ok((status, headers, res.text().await?))
    }

    async fn post_form(&mut self, action: &str, form: &[(String, String)]) -> Result<Page, Stop> {
        let url = format!("{}/{}", self.base, action.trim_start_matches('/'));
        self.send(self.http.post(url).form(form)).await
    }

    async fn register(&mut self) -> Result<String, Stop> {
        let request = self
            .http
            .post(format!("{}/register", self.base))
            .json(&serde_json::json!({
                "client_name": "Crash Test Client",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
            }));
        let (status, _, body) = self.send(request).await?;
        if status != StatusCode::CREATED {
            return Err(Stop::Wrong(format!("register: {status} {body}")));
        }
        let client: Value = serde_json::from_str(&body).map_err(|_| Stop::Down)?;
        Ok(client["client_id"].as_str().unwrap().to_string())
    }

    /// authorize → (login) → (consent) → the code of the redirect.
    async fn code(&mut self, client_id: &str) -> Result<String, Stop> {
        let mut url = url::Url::parse(&format!("{}/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "crash-state")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", RESOURCE);
        let mut page = self.send(self.http.get(url)).await?;
        if page.0 == StatusCode::OK && page.2.contains("name=\"password\"") {
            let (action, mut fields) = parse_form(&page.2);
            fields.push(("username".into(), "demo".into()));
            fields.push(("password".into(), "demo123".into()));
            page = self.post_form(&action, &fields).await?;
        }
        if page.0 == StatusCode::OK && page.2.contains("value=\"approve\"") {
            let (action, mut fields) = parse_form(&page.2);
            fields.push(("decision".into(), "approve".into()));
            page = self.post_form(&action, &fields).await?;
        }
        let (status, headers, body) = page;
        if !status.is_redirection() {
            return Err(Stop::Wrong(format!(
                "authorize {client_id}: {status} {body}"
            )));
        }
        location_params(&headers)
            .remove("code")
            .ok_or_else(|| Stop::Wrong(format!("authorize {client_id}: no code")))
    }

    async fn token(&mut self, what: &str, form: &[(&str, &str)]) -> Result<Value, Stop> {
        let request = self.http.post(format!("{}/token", self.base)).form(form);
        let (status, _, body) = self.send(request).await?;
        if status != StatusCode::OK {
            return Err(Stop::Wrong(format!("{what}: {status} {body}")));
        }
        // A body cut off by the kill was never acknowledged.
        serde_json::from_str(&body).map_err(|_| Stop::Down)
    }

    /// A new refresh token family of `client_id`.
    async fn exchange(&mut self, client_id: &str) -> Result<Chain, Stop> {
        let code = self.code(client_id).await?;
        let tokens = self
            .token(
                "code exchange",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("client_id", client_id),
                    ("resource", RESOURCE),
                ],
            )
            .await?;
        Ok(Chain {
            client_id: client_id.to_string(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_string(),
        })
    }

    /// Refreshes `chain`, returning the chain with the server's new refresh token.
    async fn refresh(&mut self, chain: &Chain) -> Result<Chain, Stop> {
        let tokens = self
            .token(
                "refresh",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &chain.refresh_token),
                    ("client_id", &chain.client_id),
                ],
            )
            .await?;
        Ok(Chain {
            client_id: chain.client_id.clone(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_string(),
        })
    }

    /// Before the load: a registration, the user's sign-in and a first family.
    async fn warm_up(mut self) -> Client {
        let first = async {
            let client_id = self.register().await?;
            self.registered.push(client_id.clone());
            let chain = self.exchange(&client_id).await?;
            self.chains.push(chain);
            Ok::<_, Stop>(())
        };
        match first.await {
            Ok(()) => self,
            Err(Stop::Down) => panic!("the server went away during the warm-up"),
            Err(Stop::Wrong(what)) => panic!("{what}"),
        }
    }

    /// Registrations, code exchanges and refreshes until the server goes away.
    /// Only answers the server gave are recorded. A wrong answer is an error.
    async fn load(mut self) -> Result<Client, String> {
        for round in 0.. {
            match self.round(round).await {
                Ok(()) => {}
                Err(Stop::Down) => return Ok(self),
                Err(Stop::Wrong(what)) => return Err(what),
            }
        }
        unreachable!()
    }

    async fn round(&mut self, round: usize) -> Result<(), Stop> {
        if round.is_multiple_of(3) {
            self.doing = "registration";
            let client_id = self.register().await?;
            self.registered.push(client_id);
        }
        let client_id = self.registered[round % self.registered.len()].clone();
        self.doing = "code exchange";
        let chain = self.exchange(&client_id).await?;
        self.chains.push(chain);
        // The newest family and an older one, twice each.
        let newest = self.chains.len() - 1;
        self.doing = "refresh";
        for index in [
            newest,
            round % self.chains.len(),
            newest,
            round % self.chains.len(),
        ] {
            let chain = self.chains[index].clone();
            self.chains[index] = self.refresh(&chain).await?;
        }
        Ok(())
    }

    /// After the restart: every registration and every family it was told about
    /// still works.
    async fn verify(mut self) -> Result<(usize, usize), String> {
        let what = |stop: Stop| match stop {
            Stop::Down => "the restarted server went away".to_string(),
            Stop::Wrong(what) => what,
        };
        for client_id in self.registered.clone() {
            self.exchange(&client_id).await.map_err(what)?;
        }
        for chain in self.chains.clone() {
            let next = self.refresh(&chain).await.map_err(what)?;
            // And the family goes on from the new token.
            self.refresh(&next).await.map_err(what)?;
        }
        Ok((self.registered.len(), self.chains.len()))
    }
}

async fn crash_under_load(db: Database) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth-server.log");
    let port = free_port();
    let mut server = Server::start(&db, port, &log).await;

    let clients =
        futures_util::future::join_all((0..CLIENTS).map(|_| Client::new(&server.base).warm_up()))
            .await;
    let load: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(client.load()))
        .collect();
    tokio::time::sleep(LOAD).await;
    server.kill();
    let mut clients = Vec::new();
    for task in load {
        match task.await.unwrap() {
            Ok(client) => clients.push(client),
            Err(what) => panic!("a wrong answer under load: {what}\n{}", server.log_text()),
        }
    }
    let registered: usize = clients.iter().map(|c| c.registered.len()).sum();
    let chains: usize = clients.iter().map(|c| c.chains.len()).sum();
    let cut_off = |doing: &str| clients.iter().filter(|c| c.doing == doing).count();
    let cut_off = ["registration", "code exchange", "refresh"].map(|d| (d, cut_off(d)));
    eprintln!(
        "killed under load: {registered} registrations and {chains} token families \
         acknowledged; cut off in the middle of: {cut_off:?}"
    );
    assert!(
        registered > CLIENTS && chains > CLIENTS,
        "the load ran: {registered} registrations, {chains} families"
    );

    // The crash state, before the restart repairs anything.
    let broken: Vec<_> = db
        .integrity()
        .await
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .collect();
    assert!(
        broken.is_empty(),
        "half-written rows after the kill: {broken:?}"
    );

    let server = Server::start(&db, port, &log).await;
    let checks = clients.into_iter().map(|mut client| {
        client.base = server.base.clone();
        client.verify()
    });
    for result in futures_util::future::join_all(checks).await {
        if let Err(what) = result {
            panic!("lost after the restart: {what}\n{}", server.log_text());
        }
    }
    drop(server);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_loses_nothing_acknowledged_on_sqlite() {
    crash_under_load(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_under_load_loses_nothing_acknowledged_on_postgres() {
    if let Some(db) = Database::postgres().await {
        crash_under_load(db).await;
    }
}
