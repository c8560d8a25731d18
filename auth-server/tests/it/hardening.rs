//! Regressions found in the security audit: rate limits that lock out legitimate
//! users, redirect-URI look-alikes, browser endpoints answering JSON, metadata and
//! scope details.

use reqwest::StatusCode;

use crate::helpers::*;

async fn public_client(app: &TestApp) -> String {
    let client = app
        .register_public(&[REDIRECT, "http://127.0.0.1/callback"])
        .await;
    client["client_id"].as_str().unwrap().to_string()
}

/// One login attempt from a fresh browser (forced login page).
async fn attempt_login(
    app: &TestApp,
    client_id: &str,
    user: &str,
    password: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut browser = Browser::default();
    let (status, _, html) = browser
        .get(app, &authorize_url(app, client_id, &[("prompt", "login")]))
        .await;
    assert_eq!(status, StatusCode::OK);
    submit_login(app, &mut browser, &html, user, password).await
}

#[tokio::test]
async fn per_username_login_limit_counts_only_failed_attempts() {
    let app = spawn_with(|s| {
        s.rate_limit.login_per_user_per_minute = 3;
        s.rate_limit.login_per_ip_per_minute = 1000;
    })
    .await;
    let client_id = public_client(&app).await;

    // Many successful logins of the same user never hit the per-username limit.
    for i in 0..8 {
        let (status, _, _) = attempt_login(&app, &client_id, "demo", "demo123").await;
        assert!(
            status == StatusCode::OK || status == StatusCode::SEE_OTHER,
            "successful login #{i} answered {status}"
        );
    }

    // Three failures spend the budget of that username ...
    for _ in 0..3 {
        let (status, _, html) = attempt_login(&app, &client_id, "demo", "wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(html.contains("Invalid username or password."));
    }
    // ... so the next attempt, even with the right password, is refused with a
    // login page (not JSON) carrying Retry-After.
    let (status, headers, html) = attempt_login(&app, &client_id, "DEMO", "demo123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(html.contains("Too many sign-in attempts"));
    assert!(html.contains("name=\"csrf_token\""));

    // Another username from the same address is unaffected.
    let (status, _, _) = attempt_login(&app, &client_id, "inspector", "inspector123").await;
    assert!(status == StatusCode::OK || status == StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_code_replayed_before_its_first_redemption_finishes_yields_no_grant() {
    use auth_server::storage::sql::SqlStore;
    use auth_server::storage::*;

    let app = spawn_app().await;
    let client_id = public_client(&app).await;
    let store = SqlStore::connect(&app.settings.database_url(), 2)
        .await
        .unwrap();
    let user = store.find_user_by_name("demo").await.unwrap().unwrap();
    let now = 1_700_000_000;
    let code_hash = "replayed-code-hash".to_string();
    store
        .insert_code(&AuthCodeRecord {
            code_hash: code_hash.clone(),
            client_id: client_id.clone(),
            user_id: user.id.clone(),
            redirect_uri: REDIRECT.into(),
            scope: "mcp:read".into(),
            resource: RESOURCE.into(),
            code_challenge: CHALLENGE.into(),
            nonce: None,
            auth_time: now,
            created_at: now,
            expires_at: now + 60,
            grant_id: None,
        })
        .await
        .unwrap();
    // First redemption wins the code ...
    assert!(matches!(
        store.redeem_code(&code_hash, now).await.unwrap(),
        CodeRedemption::Fresh(_)
    ));
    // ... a replay arrives before it has stored its grant ...
    assert!(matches!(
        store.redeem_code(&code_hash, now).await.unwrap(),
        CodeRedemption::Replayed(_)
    ));
    // ... so the first redemption must not be able to attach tokens to it.
    let grant = GrantRecord {
        id: "g-replayed".into(),
        user_id: Some(user.id.clone()),
        client_id: client_id.clone(),
        scope: "mcp:read".into(),
        resource: RESOURCE.into(),
        auth_time: now,
        created_at: now,
        expires_at: now + 900,
        revoked_at: None,
    };
    let issued = Issued {
        access: AccessTokenRecord {
            jti: "jti-replayed".into(),
            grant_id: Some("g-replayed".into()),
            client_id: client_id.clone(),
            user_id: Some(user.id.clone()),
            scope: "mcp:read".into(),
            audience: RESOURCE.into(),
            issued_at: now,
            expires_at: now + 900,
            revoked_at: None,
        },
        refresh: None,
    };
    assert!(matches!(
        store
            .create_grant(&grant, &issued, Some(&code_hash), None)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.find_grant("g-replayed").await.unwrap().is_none());
    assert!(store
        .find_access_token("jti-replayed")
        .await
        .unwrap()
        .is_none());
}

fn assert_html_page(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    expected: StatusCode,
) {
    assert_eq!(status, expected);
    assert!(headers.get("location").is_none(), "no redirect");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn loopback_redirect_may_change_only_the_port() {
    let app = spawn_app().await;
    let client_id = public_client(&app).await;
    let mut browser = Browser::default();
    for look_alike in [
        "http://127.0.0.1:5555/x/../callback",
        "http://127.0.0.1:5555/%63allback",
        "http://127.0.0.1:5555/callback?next=evil",
        "http://LOCALHOST:5555/oauth/callback",
    ] {
        let url = authorize_url(&app, &client_id, &[]).replace(
            &format!("redirect_uri={}", urlencode(REDIRECT)),
            &format!("redirect_uri={}", urlencode(look_alike)),
        );
        let (status, headers, html) = browser.get(&app, &url).await;
        assert_html_page(status, &headers, StatusCode::BAD_REQUEST);
        assert!(html.contains("Invalid redirect"), "{look_alike}: {html}");
    }
    // The same URI on another port is fine.
    let url = authorize_url(&app, &client_id, &[]).replace(
        &format!("redirect_uri={}", urlencode(REDIRECT)),
        &format!(
            "redirect_uri={}",
            urlencode("http://127.0.0.1:5555/callback")
        ),
    );
    let (status, _, html) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("name=\"password\""));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn browser_endpoints_answer_bad_requests_with_html_pages() {
    let app = spawn_app().await;
    for (method, path, content_type, body) in [
        ("POST", "/login", "application/json", "{}"),
        (
            "POST",
            "/login",
            "application/x-www-form-urlencoded",
            "username=a&username=b",
        ),
        ("POST", "/consent", "text/plain", "decision=approve"),
        (
            "POST",
            "/consent",
            "application/x-www-form-urlencoded",
            "decision=%ff&decision=x",
        ),
        ("PUT", "/authorize", "application/x-www-form-urlencoded", ""),
        ("GET", "/login", "text/plain", ""),
    ] {
        let res = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let html = res.text().await.unwrap();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {status}"
        );
        assert_html_page(status, &headers, status);
        assert!(html.contains("<h1"), "{method} {path}: {html}");
    }
    // Oversized login form: 413 page.
    let res = app
        .http
        .post(app.url("/login"))
        .form(&[(
            "username",
            "a".repeat(app.settings.server.max_body_bytes + 10),
        )])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    assert_html_page(status, &headers, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn api_endpoints_answer_wrong_methods_with_json_errors() {
    let app = spawn_app().await;
    for (method, path) in [
        ("GET", "/token"),
        ("GET", "/revoke"),
        ("GET", "/introspect"),
        ("GET", "/register"),
        ("POST", "/jwks.json"),
        ("DELETE", "/.well-known/oauth-authorization-server"),
        ("POST", "/.well-known/oauth-authorization-server/tenant"),
        ("PUT", "/.well-known/openid-configuration/tenant"),
    ] {
        let res = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(res.headers()["cache-control"], "no-store");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{method} {path}");
    }
    // CORS preflights still work on the CORS endpoints.
    let res = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/token"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn discovery_does_not_advertise_unsupported_jwt_client_auth() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let doc: serde_json::Value = app
            .http
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Only none / client_secret_post / client_secret_basic exist, so no JWT
        // client-auth algorithms may be advertised.
        assert!(doc
            .get("token_endpoint_auth_signing_alg_values_supported")
            .is_none());
        for field in [
            "issuer",
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "registration_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "userinfo_endpoint",
            "scopes_supported",
            "response_types_supported",
            "grant_types_supported",
            "code_challenge_methods_supported",
            "token_endpoint_auth_methods_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
            "claims_supported",
            "authorization_response_iss_parameter_supported",
            "client_id_metadata_document_supported",
        ] {
            assert!(doc.get(field).is_some(), "{path} lacks {field}");
        }
    }
}

#[tokio::test]
async fn service_scopes_in_a_user_request_are_dropped_not_an_error() {
    let app = spawn_app().await;
    let client_id = public_client(&app).await;
    let mut browser = Browser::default();
    let p = obtain_code(
        &app,
        &mut browser,
        &client_id,
        &[("scope", "mcp:read auth:admin auth:introspect")],
        "admin",
        "admin123",
    )
    .await;
    assert!(p.contains_key("code"), "{p:?}");
    let tokens = app.exchange(&client_id, &p["code"]).await;
    assert_eq!(tokens["scope"], "mcp:read");
    let claims = decode_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "mcp:read");
    // Truly unknown scopes are still invalid_scope (error redirect with state + iss).
    let (status, headers, _) = browser
        .get(
            &app,
            &authorize_url(&app, &client_id, &[("scope", "mcp:read bogus")]),
        )
        .await;
    assert_eq!(status, StatusCode::FOUND);
    let p = location_params(&headers);
    assert_eq!(p["error"], "invalid_scope");
    assert_eq!(p["state"], "xyz-state");
    assert_eq!(p["iss"], app.issuer());
}

#[tokio::test]
async fn a_client_cannot_revoke_another_clients_tokens() {
    let app = spawn_app().await;
    let owner = public_client(&app).await;
    let other = public_client(&app).await;
    let mut browser = Browser::default();
    let p = obtain_code(
        &app,
        &mut browser,
        &owner,
        &[("scope", "mcp:read offline_access")],
        "demo",
        "demo123",
    )
    .await;
    let tokens = app.exchange(&owner, &p["code"]).await;
    for token in ["access_token", "refresh_token"] {
        let value = tokens[token].as_str().unwrap();
        let res = app
            .http
            .post(app.url("/revoke"))
            .form(&[("token", value), ("client_id", other.as_str())])
            .send()
            .await
            .unwrap();
        // RFC 7009: no error that tells the caller anything, but nothing revoked.
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-store");
        assert_eq!(res.headers()["pragma"], "no-cache");
        assert_eq!(app.introspect(value).await["active"], true, "{token}");
    }
}

#[tokio::test]
async fn cookies_are_secure_and_host_prefixed_when_the_issuer_is_https() {
    let app = spawn_with(|s| {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        s.server.listen = format!("127.0.0.1:{port}");
        s.server.issuer = "https://auth.example.test".into();
    })
    .await;
    let client_id = public_client(&app).await;
    let set_cookies = |headers: &reqwest::header::HeaderMap| -> Vec<String> {
        headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    let mut browser = Browser::default();
    let (status, headers, html) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let csrf = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("__Host-as_csrf="))
        .expect("a __Host- CSRF cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(csrf.contains(flag), "{flag} missing in {csrf}");
    }
    assert!(!csrf.contains("Domain="));
    let (status, headers, consent) =
        submit_login(&app, &mut browser, &html, "demo", "demo123").await;
    assert_eq!(status, StatusCode::OK);
    let session = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("__Host-as_session="))
        .expect("a __Host- session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(session.contains(flag), "{flag} missing in {session}");
    }
    let device = set_cookies(&headers)
        .into_iter()
        .find(|c| c.starts_with("__Host-as_device="))
        .expect("a __Host- device cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age="] {
        assert!(device.contains(flag), "{flag} missing in {device}");
    }
    assert!(
        !device.contains("demo"),
        "the device cookie is sealed: {device}"
    );
    // The prefixed cookies carry the flow to the end.
    let (status, headers, _) = submit_consent(&app, &mut browser, &consent, "approve").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location_params(&headers)["iss"],
        "https://auth.example.test"
    );
    // A cookie without the prefix (e.g. planted by a sibling subdomain) is ignored.
    let mut planted = Browser::default();
    let (_, _, html) = planted
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    let csrf_value = planted.cookies.remove("__Host-as_csrf").unwrap();
    planted.cookies.insert("as_csrf".into(), csrf_value);
    let (status, headers, _) = submit_login(&app, &mut planted, &html, "demo", "demo123").await;
    assert_html_page(status, &headers, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_storage_failure_in_the_browser_flow_is_an_html_page() {
    let app = spawn_app().await;
    let client_id = public_client(&app).await;
    let mut browser = Browser::default();
    let (_, _, html) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    // Break the storage behind the server's back.
    let mut conn = raw_connection(&app.settings).await;
    sqlx::query("DROP TABLE consents")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, headers, page) = submit_login(&app, &mut browser, &html, "demo", "demo123").await;
    assert_html_page(status, &headers, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(page.contains("Something went wrong"));
    assert!(!page.contains("consents"), "no internals leak: {page}");
}

#[tokio::test]
async fn audit_trail_covers_every_security_event_and_the_cli_shows_it() {
    let app = spawn_with(|s| s.oauth.refresh_grace_secs = 0).await;
    let client_id = public_client(&app).await;
    let mut browser = Browser::default();
    let (_, _, html) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    submit_login(&app, &mut browser, &html, "demo", "nope-nope").await;
    let p = obtain_code(
        &app,
        &mut browser,
        &client_id,
        &[("scope", "mcp:read offline_access")],
        "demo",
        "demo123",
    )
    .await;
    let code = p["code"].clone();
    let tokens = app.exchange(&client_id, &code).await;
    // code replay
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // refresh, then reuse of the rotated token (no grace window)
    let p = obtain_code(
        &app,
        &mut browser,
        &client_id,
        &[("scope", "mcp:read offline_access")],
        "demo",
        "demo123",
    )
    .await;
    let tokens2 = app.exchange(&client_id, &p["code"]).await;
    let first = tokens2["refresh_token"].as_str().unwrap().to_string();
    let res = app.refresh(&client_id, &first).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: serde_json::Value = res.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        app.refresh(&client_id, &first).await.status(),
        StatusCode::BAD_REQUEST
    );
    // revoke
    let p = obtain_code(
        &app,
        &mut browser,
        &client_id,
        &[("scope", "mcp:read offline_access")],
        "demo",
        "demo123",
    )
    .await;
    let tokens3 = app.exchange(&client_id, &p["code"]).await;
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[
            ("token", tokens3["refresh_token"].as_str().unwrap()),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // deny
    let (_, _, consent) = browser
        .get(
            &app,
            &authorize_url(&app, &client_id, &[("prompt", "consent")]),
        )
        .await;
    let (status, _, _) = submit_consent(&app, &mut browser, &consent, "deny").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    app.handle.stop(true).await;

    // The CLI reads the same database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args([
            "--db",
            &app.settings.database_url(),
            "audit",
            "--limit",
            "100",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for event in [
        "register",
        "login_failure",
        "login_success",
        "consent",
        "consent_denied",
        "token_issued",
        "token_refreshed",
        "code_replay",
        "refresh_reuse",
        "revoke",
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(event)),
            "audit lacks {event}:\n{text}"
        );
    }
    for secret in [
        code.as_str(),
        tokens["access_token"].as_str().unwrap(),
        first.as_str(),
        rotated["refresh_token"].as_str().unwrap(),
        "demo123",
        "nope-nope",
    ] {
        assert!(!text.contains(secret), "the audit shows a secret");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .args([
            "--db",
            &app.settings.database_url(),
            "audit",
            "--limit",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
}

#[tokio::test]
async fn registration_rejects_duplicate_members_and_non_objects() {
    let app = spawn_app().await;
    for (body, needle) in [
        (
            r#"{"redirect_uris":["http://localhost:1/cb"],"redirect_uris":["https://evil.example/cb"]}"#,
            "duplicate member \\\"redirect_uris\\\"",
        ),
        (
            r#"[{"redirect_uris":["http://localhost:1/cb"]}]"#,
            "JSON object",
        ),
        (r#""just a string""#, "JSON object"),
        (
            r#"{"redirect_uris":["http://localhost:1/cb"]"#,
            "invalid JSON",
        ),
    ] {
        let res = app
            .http
            .post(app.url("/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(res.headers()["cache-control"], "no-store");
        let text = res.text().await.unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["error"], "invalid_request", "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
    }
    // Wrong member types are still invalid_client_metadata.
    let res = app
        .http
        .post(app.url("/register"))
        .json(&serde_json::json!({"redirect_uris": "http://localhost:1/cb"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["error"], "invalid_client_metadata");
}

#[tokio::test]
async fn starting_without_demo_retires_the_public_demo_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut settings = test_settings(&db);
    settings.server.listen = format!("127.0.0.1:{port}");
    settings.server.issuer = format!("http://127.0.0.1:{port}");
    // A demo run; the operator then gives `admin` a real password.
    let app = start(settings.clone()).await;
    assert_eq!(
        app.client_credentials(None).await["token_type"],
        "Bearer",
        "the demo client works in demo mode"
    );
    app.handle.stop(true).await;
    let store = auth_server::storage::sql::SqlStore::connect(&settings.database_url(), 1)
        .await
        .unwrap();
    use auth_server::storage::Store as _;
    let hash = auth_server::domain::passwords::hash("a-real-Passw0rd").unwrap();
    assert!(store.set_password("admin", &hash, 1).await.unwrap());
    store.close().await;

    // Production start on the same database, demo mode off.
    settings.demo.enabled = false;
    let app = start(settings.clone()).await;
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth("mcp-server", Some("demo-mcp-server-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "demo client removed"
    );
    let client_id = public_client(&app).await;
    for (user, password) in [("demo", "demo123"), ("inspector", "inspector123")] {
        let (status, _, html) = attempt_login(&app, &client_id, user, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user} still signs in");
        assert!(!html.contains("demo123"), "no demo hint without demo mode");
    }
    // An account whose password was changed is kept.
    let (status, _, _) = attempt_login(&app, &client_id, "admin", "a-real-Passw0rd").await;
    assert!(status == StatusCode::OK || status == StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn cors_only_on_the_endpoints_browser_clients_call() {
    let app = spawn_app().await;
    let preflight = |path: &str, method: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://app.example")
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    for (path, method) in [
        ("/.well-known/oauth-authorization-server", "GET"),
        ("/.well-known/openid-configuration", "GET"),
        ("/register", "POST"),
        ("/token", "POST"),
        ("/revoke", "POST"),
        ("/jwks.json", "GET"),
        ("/userinfo", "GET"),
    ] {
        let res = preflight(path, method).await.unwrap();
        assert_eq!(
            res.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string()),
            Some("*".to_string()),
            "{path} must allow CORS"
        );
    }
    for (path, method) in [
        ("/authorize", "GET"),
        ("/login", "POST"),
        ("/consent", "POST"),
        ("/introspect", "POST"),
        ("/admin/grants", "GET"),
        ("/healthz", "GET"),
        ("/metrics", "GET"),
    ] {
        let res = preflight(path, method).await.unwrap();
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{path} must not allow CORS (preflight)"
        );
        let res = app
            .http
            .request(method.parse().unwrap(), app.url(path))
            .header("origin", "https://app.example")
            .send()
            .await
            .unwrap();
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{path} must not allow CORS"
        );
    }
}

#[tokio::test]
async fn introspection_of_a_service_token_has_no_null_members() {
    let app = spawn_app().await;
    let service = app.client_credentials(Some("auth:introspect")).await;
    let answer = app
        .introspect(service["access_token"].as_str().unwrap())
        .await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "access_token");
    assert_eq!(answer["sub"], "mcp-server");
    assert_eq!(answer["aud"], app.issuer());
    let members = answer.as_object().unwrap();
    assert!(!members.contains_key("username"), "{answer}");
    assert!(members.values().all(|v| !v.is_null()), "{answer}");
    for key in ["client_id", "scope", "iss", "exp", "iat", "nbf", "jti"] {
        assert!(members.contains_key(key), "{key} missing: {answer}");
    }
}

/// Many exchanges at once (the store group-commits them, across both workers),
/// every code presented twice: a code never yields two grants, and no token
/// issued for a replayed code stays active. Codes presented once all succeed.
#[tokio::test]
async fn concurrent_exchanges_and_replays_keep_codes_single_use() {
    let app = spawn_with(|s| s.rate_limit.enabled = false).await;
    let client_id = public_client(&app).await;
    let mut browser = Browser::default();
    let mut codes = Vec::new();
    for _ in 0..16 {
        let p = obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
        codes.push(p["code"].clone());
    }
    let (replayed, single) = codes.split_at(8);
    let exchange = |code: String| {
        let app = &app;
        let client_id = &client_id;
        async move {
            let res = app
                .token(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("client_id", client_id),
                    ("resource", RESOURCE),
                ])
                .await;
            let status = res.status();
            let body: serde_json::Value = res.json().await.unwrap();
            (code, status, body)
        }
    };
    let requests = replayed
        .iter()
        .chain(replayed.iter())
        .chain(single.iter())
        .map(|c| exchange(c.clone()));
    let results = futures_util::future::join_all(requests).await;
    for code in replayed {
        let answers: Vec<_> = results.iter().filter(|(c, _, _)| c == code).collect();
        assert_eq!(answers.len(), 2);
        let ok: Vec<_> = answers
            .iter()
            .filter(|(_, s, _)| *s == StatusCode::OK)
            .collect();
        assert!(ok.len() <= 1, "a code yielded two grants: {answers:?}");
        for (_, status, body) in &answers {
            if *status != StatusCode::OK {
                assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
                assert_eq!(body["error"], "invalid_grant", "{body}");
            }
        }
        for (_, _, body) in ok {
            let token = body["access_token"].as_str().unwrap();
            assert_eq!(
                app.introspect(token).await["active"],
                false,
                "a token from a replayed code must not stay active"
            );
        }
    }
    for code in single {
        let (_, status, body) = results.iter().find(|(c, _, _)| c == code).unwrap();
        assert_eq!(*status, StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(app.introspect(token).await["active"], true);
    }
}
