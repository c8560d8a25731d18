//! What must fail, and how: PKCE, code replay, redirect URIs, client secrets,
//! resources, unknown clients, bodies.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn setup() -> (TestApp, String, Browser) {
    let app = spawn_app().await;
    let client = app
        .register_public(&[REDIRECT, "http://127.0.0.1/callback"])
        .await;
    let id = client["client_id"].as_str().unwrap().to_string();
    (app, id, Browser::default())
}

async fn error_of(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn pkce_is_mandatory_and_s256_only() {
    let (app, client_id, mut browser) = setup().await;
    // plain → error redirect
    let mut url = authorize_url(&app, &client_id, &[]);
    url = url.replace("code_challenge_method=S256", "code_challenge_method=plain");
    let (status, headers, _) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::FOUND);
    let p = location_params(&headers);
    assert_eq!(p["error"], "invalid_request");
    assert_eq!(p["state"], "xyz-state");
    assert_eq!(p["iss"], app.issuer());

    // missing challenge → error redirect
    let url =
        authorize_url(&app, &client_id, &[]).replace(&format!("code_challenge={CHALLENGE}&"), "");
    let (status, headers, _) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location_params(&headers)["error"], "invalid_request");

    // wrong verifier → invalid_grant
    let p = obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &p["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"a".repeat(43)),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    // missing verifier → invalid_grant
    let p = obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &p["code"]),
            ("redirect_uri", REDIRECT),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(error_of(res).await.1, "invalid_grant");
}

#[tokio::test]
async fn code_replay_fails_and_revokes_the_tokens_it_issued() {
    let (app, client_id, mut browser) = setup().await;
    let p = obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    let tokens = app.exchange(&client_id, &p["code"]).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(access).await["active"], true);
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &p["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    assert_eq!(app.introspect(access).await["active"], false);
    let res = app
        .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(error_of(res).await.1, "invalid_grant");
}

#[tokio::test]
async fn redirect_uri_rules_and_unknown_client_get_an_html_page_not_a_redirect() {
    let (app, client_id, mut browser) = setup().await;
    // unregistered redirect
    let url = authorize_url(&app, &client_id, &[]).replace("localhost%3A6274", "evil.example");
    let (status, headers, body) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
    assert!(body.contains("<html") && body.contains("Invalid redirect"));

    // Registered localhost:6274 does not allow another path.
    let url = authorize_url(&app, &client_id, &[]).replace("%2Foauth%2Fcallback", "%2Fother");
    let (status, headers, _) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());

    // RFC 8252 loopback rule: a port-less registered 127.0.0.1 URI accepts any port.
    let loopback = "http://127.0.0.1:53123/callback";
    let url =
        authorize_url(&app, &client_id, &[]).replace(&urlencode(REDIRECT), &urlencode(loopback));
    let (status, _, body) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("127.0.0.1:53123"));

    // Unknown client → page, never a redirect.
    let url = authorize_url(&app, "no-such-client", &[]);
    let (status, headers, body) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
    assert!(body.contains("Unknown application"));
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    // XSS through client_id is escaped.
    let url = authorize_url(&app, "<script>alert(1)</script>", &[]);
    let (_, _, body) = browser.get(&app, &url).await;
    assert!(!body.contains("<script>alert"));

    // redirect_uri mismatch at the token endpoint
    let p = obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &p["code"]),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(error_of(res).await.1, "invalid_grant");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn resource_must_be_configured_and_stays_bound() {
    let (app, client_id, mut browser) = setup().await;
    let url = authorize_url(&app, &client_id, &[]).replace(
        &urlencode(RESOURCE),
        &urlencode("https://attacker.example/mcp"),
    );
    let (status, headers, _) = browser.get(&app, &url).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location_params(&headers)["error"], "invalid_target");

    // A different (configured) resource at the token endpoint than at authorize.
    let p = obtain_code(&app, &mut browser, &client_id, &[], "demo", "demo123").await;
    let res = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &p["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
            ("resource", "http://127.0.0.1:39998/other"),
        ])
        .await;
    assert_eq!(error_of(res).await.1, "invalid_target");

    // No resource at all: the first configured one becomes aud; unknown scope is invalid_scope.
    let url = authorize_url(&app, &client_id, &[("scope", "bogus")]);
    let (_, headers, _) = browser.get(&app, &url).await;
    assert_eq!(location_params(&headers)["error"], "invalid_scope");
}

#[tokio::test]
async fn confidential_client_secret_is_checked() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(app.url("/register"))
        .json(&serde_json::json!({"redirect_uris": [REDIRECT], "client_name": "Conf", "grant_types": ["authorization_code", "refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let reg: Value = res.json().await.unwrap();
    let client_id = reg["client_id"].as_str().unwrap();
    let secret = reg["client_secret"].as_str().unwrap();
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");

    let mut browser = Browser::default();
    let p = obtain_code(&app, &mut browser, client_id, &[], "demo", "demo123").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", p["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth(client_id, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(error_of(res).await.1, "invalid_client");
    // Without any secret
    let res = app
        .http
        .post(app.url("/token"))
        .form(&[form.as_slice(), &[("client_id", client_id)]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );

    // The code was not consumed by failed client authentication; the right secret works (post).
    let res = app
        .http
        .post(app.url("/token"))
        .form(
            &[
                form.as_slice(),
                &[("client_id", client_id), ("client_secret", secret)],
            ]
            .concat(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_invalid_request_json() {
    let app = spawn_app().await;
    let big = "x".repeat(200 * 1024);
    let res = app
        .http
        .post(app.url("/token"))
        .form(&[("grant_type", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(res).await.1, "invalid_request");

    let res = app
        .http
        .post(app.url("/token"))
        .header("content-type", "application/json")
        .body("{\"grant_type\":")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );

    let res = app
        .http
        .post(app.url("/token"))
        .form(&[("grant_type", "a"), ("grant_type", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );

    let res = app
        .http
        .post(app.url("/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.1, "unsupported_grant_type");

    let res = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(res).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );

    let res = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/json")
        .body(format!("{{\"client_name\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(res).await.1, "invalid_request");

    let res = app
        .http
        .post(app.url("/introspect"))
        .body("\u{0}\u{1}")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
}

#[tokio::test]
async fn login_rate_limit_answers_429_with_retry_after() {
    let app = spawn_with(|s| {
        s.rate_limit.login_per_user_per_minute = 2;
    })
    .await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let (_, _, body) = browser
        .get(&app, &authorize_url(&app, client_id, &[]))
        .await;
    let mut last = StatusCode::OK;
    let mut headers = reqwest::header::HeaderMap::new();
    for _ in 0..3 {
        let (s, h, _) = submit_login(&app, &mut browser, &body, "demo", "wrong-password").await;
        last = s;
        headers = h;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}
