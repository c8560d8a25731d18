//! auth-server on PostgreSQL with several replicas: `Application`s sharing one
//! database, with the requests of one flow split between them, the way a load
//! balancer spreads them. Each test makes its own database, dropped when it ends.
//! They run when PostgreSQL answers on 127.0.0.1:5432 (see
//! `create_postgres_database`), and must with `AUTH_TEST_POSTGRES_URL` or
//! `AUTH_TEST_BACKEND=postgres`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auth_server::Settings;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection as _;

use crate::helpers::*;

/// The issuer every replica shares: the address clients know, the balancer's.
const ISSUER: &str = "http://127.0.0.1:39990";

/// Settings for the replicas of one deployment on the database `url`.
fn replica_settings(url: &str) -> Settings {
    let mut s = settings_on(url);
    s.server.issuer = ISSUER.into();
    s
}

/// `n` replicas on one fresh database, started together; `None` when PostgreSQL
/// is not there (and not required).
async fn replicas(n: usize, tweak: impl Fn(&mut Settings)) -> Option<Vec<TestApp>> {
    let url = postgres_test_database("replicas").await?;
    let mut settings = replica_settings(&url);
    tweak(&mut settings);
    Some(join_all((0..n).map(|_| start(settings.clone()))).await)
}

/// The `COUNT(*)` of `sql`, with `arg` for its `$1` if it has one.
async fn count(settings: &Settings, sql: &str, arg: Option<&str>) -> i64 {
    let mut conn = raw_connection(settings).await;
    let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()));
    if let Some(arg) = arg {
        query = query.bind(arg.to_string());
    }
    let n = query.fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    n
}

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app
        .http
        .get(app.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    kids.sort();
    kids
}

fn kid(jwt: &str) -> String {
    decode_header(jwt)["kid"].as_str().unwrap().to_string()
}

fn string(v: &Value, member: &str) -> String {
    v[member].as_str().unwrap_or_default().to_string()
}

/// A browser flow split over the replicas: the authorization request on `a`, the
/// login on `b`, the consent on `a`. Returns the code.
async fn split_flow(a: &TestApp, b: &TestApp, browser: &mut Browser, client_id: &str) -> String {
    let (status, _, login_page) = browser.get(a, &authorize_url(a, client_id, &[])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, consent_page) = submit_login(b, browser, &login_page, "demo", "demo123").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the login (and CSRF cookie of a) works on b"
    );
    let (status, headers, _) = submit_consent(a, browser, &consent_page, "approve").await;
    assert!(status.is_redirection(), "{status}");
    let params = location_params(&headers);
    assert_eq!(params["iss"], ISSUER);
    params["code"].clone()
}

#[tokio::test]
async fn replicas_started_together_on_an_empty_database_share_one_schema_and_one_set_of_keys() {
    let Some(apps) = replicas(4, |_| {}).await else {
        return;
    };
    let settings = &apps[0].settings;
    // The migrations ran once, under the advisory lock, each recorded once.
    let mut conn = raw_connection(settings).await;
    let ledger: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(ledger, [(1, true), (2, true), (3, true), (4, true)]);
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(users, 3, "the demo users, once");
    conn.close().await.unwrap();
    assert_eq!(
        count(settings, "SELECT COUNT(*) FROM signing_keys", None).await,
        1
    );
    let cookie_keys = "SELECT COUNT(*) FROM kv WHERE key = 'cookie_key'";
    assert_eq!(count(settings, cookie_keys, None).await, 1);
    let published = jwks_kids(&apps[0]).await;
    assert_eq!(published.len(), 1);
    for app in &apps {
        assert_eq!(jwks_kids(app).await, published);
        let token = string(&app.client_credentials(None).await, "access_token");
        assert_eq!(
            vec![kid(&token)],
            published,
            "every replica signs with the one key"
        );
    }

    // One cookie key: each step of the browser flow on another replica.
    let client_id = string(&apps[0].register_public(&[REDIRECT]).await, "client_id");
    let mut browser = Browser::default();
    let (_, _, login_page) = browser
        .get(&apps[0], &authorize_url(&apps[0], &client_id, &[]))
        .await;
    let (_, _, consent_page) =
        submit_login(&apps[1], &mut browser, &login_page, "demo", "demo123").await;
    let (status, headers, _) =
        submit_consent(&apps[2], &mut browser, &consent_page, "approve").await;
    assert!(status.is_redirection());
    let code = location_params(&headers)["code"].clone();
    let tokens = apps[3].exchange(&client_id, &code).await;
    // The session cookie sealed by replica 1 opens on replica 3.
    let (status, headers, _) = browser
        .get(&apps[3], &authorize_url(&apps[3], &client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::FOUND, "signed in and consented already");
    assert!(location_params(&headers).contains_key("code"));
    for app in &apps {
        assert_eq!(
            app.introspect(&string(&tokens, "access_token")).await["active"],
            true
        );
    }
}

#[tokio::test]
async fn migrations_are_idempotent_when_a_replica_restarts() {
    let Some(mut apps) = replicas(1, |_| {}).await else {
        return;
    };
    let app = apps.remove(0);
    let settings = app.settings.clone();
    let kids = jwks_kids(&app).await;
    app.stop().await;
    let again = join_all((0..2).map(|_| start(settings.clone()))).await;
    let ledger = count(&settings, "SELECT COUNT(*) FROM _sqlx_migrations", None).await;
    assert_eq!(ledger, 4, "nothing applied twice");
    for app in &again {
        assert_eq!(jwks_kids(app).await, kids, "the same key after the restart");
    }
}

#[tokio::test]
async fn replicas_given_a_key_encryption_key_together_seal_a_plaintext_database_once() {
    let Some(mut apps) = replicas(1, |_| {}).await else {
        return;
    };
    let first = apps.remove(0);
    let token = string(&first.client_credentials(None).await, "access_token");
    let mut settings = first.settings.clone();
    first.stop().await;
    // The operator adds a key-encryption key and starts three replicas at once:
    // each finds the keys in plaintext and tries to seal them.
    let dir = tempfile::tempdir().unwrap();
    let kek = dir.path().join("kek");
    std::fs::write(&kek, "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    settings.secrets.key_file = kek.display().to_string();
    let apps = join_all((0..3).map(|_| start(settings.clone()))).await;
    let plaintext = "SELECT COUNT(*) FROM signing_keys WHERE private_pkcs8 NOT LIKE 'v1:%'";
    assert_eq!(count(&settings, plaintext, None).await, 0);
    for app in &apps {
        assert_eq!(
            app.introspect(&token).await["active"],
            true,
            "the same key, sealed"
        );
    }
}

#[tokio::test]
async fn a_login_on_one_replica_continues_on_another() {
    let Some(apps) = replicas(2, |_| {}).await else {
        return;
    };
    let (a, b) = (&apps[0], &apps[1]);
    let client_id = string(&a.register_public(&[REDIRECT]).await, "client_id");
    let mut browser = Browser::default();
    let code = split_flow(a, b, &mut browser, &client_id).await;
    // The code minted on a is redeemed on b; the refresh token rotates on a.
    let tokens = b.exchange(&client_id, &code).await;
    let access = string(&tokens, "access_token");
    assert_eq!(a.introspect(&access).await["active"], true);
    let res = a
        .refresh(&client_id, &string(&tokens, "refresh_token"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.unwrap();
    // The session (made on b) and the consent (saved on a) are known to b: no page.
    let (status, headers, _) = browser.get(b, &authorize_url(b, &client_id, &[])).await;
    assert_eq!(status, StatusCode::FOUND);
    let second = location_params(&headers)["code"].clone();
    a.exchange(&client_id, &second).await;
    // A revocation on b is seen by a.
    let res = b
        .http
        .post(b.url("/revoke"))
        .form(&[
            ("token", string(&rotated, "refresh_token").as_str()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        a.introspect(&string(&rotated, "access_token")).await["active"],
        false
    );
    let res = a
        .refresh(&client_id, &string(&rotated, "refresh_token"))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_code_is_redeemed_once_across_replicas() {
    let Some(apps) = replicas(2, |_| {}).await else {
        return;
    };
    let (a, b) = (&apps[0], &apps[1]);
    let client_id = string(&a.register_public(&[REDIRECT]).await, "client_id");
    let mut browser = Browser::default();

    // Redeemed on a, replayed on b: the replay fails and revokes what a issued.
    let code = split_flow(a, b, &mut browser, &client_id).await;
    let first = a.exchange(&client_id, &code).await;
    let replay = b
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        a.introspect(&string(&first, "access_token")).await["active"],
        false
    );

    // Many redemptions of one code at once, split over both replicas.
    for round in 0..5 {
        let code =
            obtain_code(a, &mut browser, &client_id, &[], "demo", "demo123").await["code"].clone();
        let exchanges = (0..8).map(|i| {
            let app = &apps[i % 2];
            let code = code.clone();
            let client_id = client_id.clone();
            async move {
                let res = app
                    .token(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                        ("client_id", &client_id),
                    ])
                    .await;
                let status = res.status();
                (status, res.json::<Value>().await.unwrap())
            }
        });
        let answers = join_all(exchanges).await;
        let issued: Vec<&Value> = answers
            .iter()
            .filter(|(status, _)| *status == StatusCode::OK)
            .map(|(_, body)| body)
            .collect();
        assert!(
            issued.len() <= 1,
            "round {round}: {} successes",
            issued.len()
        );
        for (status, body) in &answers {
            if *status != StatusCode::OK {
                assert_eq!(*status, StatusCode::BAD_REQUEST, "round {round}: {body}");
                assert_eq!(body["error"], "invalid_grant", "round {round}");
            }
        }
        // Seven replays: whatever the one redemption issued is revoked, on both.
        for body in issued {
            for app in &apps {
                let access = string(body, "access_token");
                assert_eq!(
                    app.introspect(&access).await["active"],
                    false,
                    "round {round}"
                );
            }
            let res = b.refresh(&client_id, &string(body, "refresh_token")).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "round {round}");
        }
    }
    let live = count(
        &a.settings,
        "SELECT COUNT(*) FROM grants WHERE client_id = $1 AND revoked_at IS NULL",
        Some(&client_id),
    )
    .await;
    assert_eq!(live, 0, "every grant of a replayed code is revoked");
}

#[tokio::test]
async fn a_refresh_token_rotates_once_across_replicas() {
    let Some(apps) = replicas(2, |_| {}).await else {
        return;
    };
    let (a, b) = (&apps[0], &apps[1]);
    let client_id = string(&a.register_public(&[REDIRECT]).await, "client_id");
    let mut browser = Browser::default();
    let code = split_flow(a, b, &mut browser, &client_id).await;
    let tokens = a.exchange(&client_id, &code).await;
    let grant = decode_claims(&string(&tokens, "access_token"))["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut current = string(&tokens, "refresh_token");
    for round in 0..5 {
        // The same refresh token presented eight times at once, on both replicas
        // (a client retrying, within the grace window): one rotation, and every
        // answer carries the same successor.
        let refreshes = (0..8).map(|i| {
            let app = &apps[i % 2];
            let (client_id, current) = (client_id.clone(), current.clone());
            async move {
                let res = app.refresh(&client_id, &current).await;
                assert_eq!(res.status(), StatusCode::OK, "round {round}");
                res.json::<Value>().await.unwrap()
            }
        });
        let answers = join_all(refreshes).await;
        let successor = string(&answers[0], "refresh_token");
        assert_ne!(successor, current);
        for answer in &answers {
            assert_eq!(string(answer, "refresh_token"), successor, "round {round}");
            let access = string(answer, "access_token");
            assert_eq!(b.introspect(&access).await["active"], true, "round {round}");
        }
        let live = count(
            &a.settings,
            "SELECT COUNT(*) FROM refresh_tokens WHERE grant_id = $1 AND rotated_at IS NULL",
            Some(&grant),
        )
        .await;
        assert_eq!(
            live, 1,
            "round {round}: one live refresh token in the family"
        );
        current = successor;
    }
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_family_whichever_replica_sees_it() {
    let Some(apps) = replicas(2, |s| s.oauth.refresh_grace_secs = 1).await else {
        return;
    };
    let (a, b) = (&apps[0], &apps[1]);
    let client_id = string(&a.register_public(&[REDIRECT]).await, "client_id");
    let mut browser = Browser::default();
    for round in 0..3 {
        let code =
            obtain_code(a, &mut browser, &client_id, &[], "demo", "demo123").await["code"].clone();
        let tokens = b.exchange(&client_id, &code).await;
        let grant = decode_claims(&string(&tokens, "access_token"))["sid"]
            .as_str()
            .unwrap()
            .to_string();
        let stolen = string(&tokens, "refresh_token");
        let res = a.refresh(&client_id, &stolen).await;
        assert_eq!(res.status(), StatusCode::OK);
        let rotated: Value = res.json().await.unwrap();
        // Past the grace window (second resolution: at least two seconds on).
        tokio::time::sleep(Duration::from_millis(2100)).await;
        // The stolen token comes back on one replica while the legitimate client
        // refreshes on the other, at the same time, the roles swapping each round.
        let (thief, owner) = if round % 2 == 0 { (b, a) } else { (a, b) };
        let successor = string(&rotated, "refresh_token");
        let (reuse, legit) = tokio::join!(
            thief.refresh(&client_id, &stolen),
            owner.refresh(&client_id, &successor),
        );
        assert_eq!(reuse.status(), StatusCode::BAD_REQUEST, "round {round}");
        let legit_status = legit.status();
        let legit: Value = legit.json().await.unwrap();
        // Whatever the legitimate refresh got (before or after the revocation) is
        // revoked now, on both replicas, and the family has no live token left.
        for token in [
            string(&rotated, "access_token"),
            string(&legit, "access_token"),
        ] {
            if token.is_empty() {
                continue;
            }
            for app in &apps {
                assert_eq!(
                    app.introspect(&token).await["active"],
                    false,
                    "round {round}"
                );
            }
        }
        for refresh in [
            string(&rotated, "refresh_token"),
            string(&legit, "refresh_token"),
        ] {
            if !refresh.is_empty() {
                let res = owner.refresh(&client_id, &refresh).await;
                assert_eq!(res.status(), StatusCode::BAD_REQUEST, "round {round}");
            }
        }
        let settings = &a.settings;
        let live_access = count(
            settings,
            "SELECT COUNT(*) FROM access_tokens WHERE grant_id = $1 AND revoked_at IS NULL",
            Some(&grant),
        )
        .await;
        let refresh_left = count(
            settings,
            "SELECT COUNT(*) FROM refresh_tokens WHERE grant_id = $1",
            Some(&grant),
        )
        .await;
        assert_eq!(
            (live_access, refresh_left),
            (0, 0),
            "round {round}: legitimate refresh answered {legit_status}"
        );
    }
}

#[tokio::test]
async fn a_key_rotation_on_one_replica_reaches_every_replica_within_refresh_secs() {
    let Some(apps) = replicas(3, |s| s.keys.refresh_secs = 1).await else {
        return;
    };
    let (a, b, c) = (&apps[0], &apps[1], &apps[2]);
    let old_token = string(&b.client_credentials(None).await, "access_token");
    let old_kid = kid(&old_token);

    // `keys rotate` by the CLI against the shared database, as an operator on a's
    // machine would run it.
    let out = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(["--db", &a.settings.database_url(), "keys", "rotate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated_at = Instant::now();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let new_kid = stdout
        .split_whitespace()
        .nth(4)
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    assert!(stdout.starts_with("new active signing key "), "{stdout}");
    // c publishes the new key at once (its JWKS reads the database), next to the
    // retired one, which signed tokens still in use.
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(jwks_kids(c).await, both);
    // b, which nobody asked for its JWKS, signs with the new key within
    // keys.refresh_secs (its reload loop).
    let token = loop {
        let token = string(&b.client_credentials(None).await, "access_token");
        if kid(&token) == new_kid {
            break token;
        }
        assert!(
            rotated_at.elapsed() < Duration::from_secs(3),
            "b still signs with the retired key after {:?}",
            rotated_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for app in &apps {
        assert_eq!(jwks_kids(app).await, both);
        assert_eq!(app.introspect(&token).await["active"], true);
        assert_eq!(
            app.introspect(&old_token).await["active"],
            true,
            "tokens of the retired key stay valid"
        );
    }
}

/// The real binary on `--db postgres://USER:PASSWORD@...`: it serves, and the
/// password appears in no log line or error.
#[tokio::test]
async fn serve_takes_a_postgres_url_and_never_shows_its_password() {
    let Some(url) = postgres_test_database("serve").await else {
        return;
    };
    // The configured server's password, or (trust authentication ignores it) one
    // made up: either way the server must not show it.
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.rsplit_once('@').unwrap();
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user.to_string(), password.to_string()),
        None => (userinfo.to_string(), "pw-never-shown-7f3a".to_string()),
    };
    let password = password.as_str();
    let with_password = format!("{scheme}://{user}:{password}@{host}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args([
            "--db",
            &with_password,
            "serve",
            "--demo",
            "--resource",
            RESOURCE,
        ])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--issuer", &base])
        .env("AUTH__SERVER__METRICS_LISTEN", "off")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let healthy = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        let health = http.get(format!("{base}/healthz")).send().await;
        if health.is_ok_and(|r| r.status() == StatusCode::OK) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let token = if healthy {
        http.post(format!("{base}/token"))
            .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .status()
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(healthy, "the server did not start: {text}");
    assert_eq!(token, StatusCode::OK);
    assert!(
        text.contains(&format!("{user}:***@")),
        "the redacted URL is logged: {text}"
    );
    assert!(!text.contains(password), "{text}");

    // A database that does not exist: the start fails, naming the URL without it.
    let (base_url, _) = with_password.rsplit_once('/').unwrap();
    let missing = format!("{base_url}/no_such_database_{}", std::process::id());
    let out = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args(["--db", &missing, "serve", "--listen", "127.0.0.1:0"])
        .env("AUTH__SERVER__METRICS_LISTEN", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("opening the database"), "{stderr}");
    assert!(stderr.contains(&format!("{user}:***@")), "{stderr}");
    assert!(!stderr.contains(password), "{stderr}");
}
