//! Sign-in through upstream identity providers, the parts that need no real provider
//! (node-oidc-provider runs in e2e/tests/upstream-idp.test.js): the login page, the
//! redirect upstream with state + PKCE, the callback's refusals on our own page, a
//! pending sign-in that survives a restart, `/logout`.

use auth_server::settings::identity_providers::{IdentityProviderConfig, IdpKind};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::StatusCode;

use crate::helpers::*;

/// A plain OAuth 2.0 provider (no discovery) where nothing listens.
fn provider(id: &str, display_name: &str) -> IdentityProviderConfig {
    IdentityProviderConfig {
        id: id.into(),
        display_name: display_name.into(),
        kind: IdpKind::Oauth2,
        issuer: "http://127.0.0.1:9".into(),
        authorization_endpoint: "http://127.0.0.1:9/authorize".into(),
        token_endpoint: "http://127.0.0.1:9/token".into(),
        userinfo_endpoint: "http://127.0.0.1:9/user".into(),
        client_id: "ours".into(),
        client_secret: shared::Secret::new("upstream-secret"),
        ..Default::default()
    }
}

/// Every form of a page: its action and hidden fields.
fn forms(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    html.split("<form method=\"post\"")
        .skip(1)
        .map(|chunk| {
            let chunk = &chunk[..chunk.find("</form>").unwrap()];
            parse_form(&format!("<form method=\"post\"{chunk}</form>"))
        })
        .collect()
}

fn sets_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> bool {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .any(|v| v.to_str().unwrap().starts_with(&format!("{name}=")))
}

async fn metrics(app: &TestApp) -> String {
    let base = app.metrics_base.as_deref().expect("a metrics listener");
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_login_page_offers_each_provider_and_its_button_goes_upstream() {
    let app = spawn_with(|s| {
        s.identity_providers = vec![provider("corp", "Corp SSO"), provider("gh", "GitHub")]
    })
    .await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let (status, _, body) = browser
        .get(&app, &authorize_url(&app, client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Continue with Corp SSO") && body.contains("Continue with GitHub"));
    assert!(
        body.contains("type=\"password\""),
        "password login is on by default"
    );
    let forms = forms(&body);
    assert_eq!(forms.len(), 3);
    let (action, fields) = forms
        .iter()
        .find(|(a, _)| a == "idp/corp/login")
        .unwrap()
        .clone();
    assert!(fields
        .iter()
        .any(|(k, v)| k == "client_id" && v == client_id));

    // Without the CSRF token: refused.
    let no_csrf: Vec<_> = fields
        .iter()
        .filter(|(k, _)| k != "csrf_token")
        .cloned()
        .collect();
    let (status, headers, _) = browser
        .post_form(&app, &format!("/{action}"), &no_csrf)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get(LOCATION).is_none());

    let (status, headers, _) = browser
        .post_form(&app, &format!("/{action}"), &fields)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = location(&headers);
    assert!(to.starts_with("http://127.0.0.1:9/authorize?"), "{to}");
    let q = location_params(&headers);
    assert_eq!(q["client_id"], "ours");
    assert_eq!(q["response_type"], "code");
    assert_eq!(
        q["redirect_uri"],
        format!("{}/idp/corp/callback", app.issuer())
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 43);
    assert!(
        !q.contains_key("nonce"),
        "no nonce for a plain OAuth 2.0 provider"
    );
    assert!(
        !q.contains_key("resource"),
        "the MCP resource stays with our tokens"
    );
    assert!(
        sets_cookie(&headers, "as_idp"),
        "the browser binding cookie"
    );
}

#[tokio::test]
async fn with_password_login_off_and_one_provider_authorize_goes_straight_there() {
    let app = spawn_with(|s| {
        s.login.password = false;
        s.identity_providers = vec![provider("corp", "Corp SSO")];
    })
    .await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let (status, headers, _) = browser
        .get(
            &app,
            &authorize_url(&app, client_id, &[("prompt", "login")]),
        )
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(location(&headers).starts_with("http://127.0.0.1:9/authorize?"));
    assert_eq!(location_params(&headers)["prompt"], "login");

    // A bad client request never leaves our origin.
    let bad = authorize_url(&app, client_id, &[]).replace("localhost%3A6274", "evil.example");
    let (status, headers, body) = browser.get(&app, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(headers.get(LOCATION).is_none());
    let (status, headers, _) = browser.get(&app, &authorize_url(&app, "nobody", &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get(LOCATION).is_none());
    // A client error after the client is known goes back to it, as always.
    let (status, headers, _) = browser
        .get(&app, &authorize_url(&app, client_id, &[("scope", "nope")]))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location_params(&headers)["error"], "invalid_scope");

    // The password form is gone, and so is its endpoint.
    let form = [("username".to_string(), "demo".to_string())];
    let (status, _, body) = browser.post_form(&app, "/login", &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("Password sign-in is off"), "{body}");
}

/// Starts a sign-in and returns the upstream `state` it sent.
async fn start_sign_in(app: &TestApp, browser: &mut Browser, client_id: &str) -> String {
    let (status, headers, body) = browser.get(app, &authorize_url(app, client_id, &[])).await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    location_params(&headers)["state"].clone()
}

#[tokio::test]
async fn callbacks_that_cannot_be_trusted_end_on_our_page() {
    let app = spawn_with(|s| {
        s.login.password = false;
        s.identity_providers = vec![provider("corp", "Corp SSO")];
    })
    .await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let callback = |query: &str| app.url(&format!("/idp/corp/callback?{query}"));
    let refused = |(status, headers, body): (StatusCode, reqwest::header::HeaderMap, String),
                   want: StatusCode,
                   text: &str| {
        assert_eq!(status, want, "{body}");
        assert!(headers.get(LOCATION).is_none(), "never a redirect");
        assert!(body.contains(text), "{text:?} not in {body}");
    };

    let state = start_sign_in(&app, &mut browser, client_id).await;
    refused(
        browser
            .get(&app, &callback(&format!("code=c&state={state}x")))
            .await,
        StatusCode::BAD_REQUEST,
        "unknown, expired",
    );
    refused(
        browser.get(&app, &callback("code=c")).await,
        StatusCode::BAD_REQUEST,
        "has no state",
    );
    // The right state in another browser; then the state is spent.
    refused(
        Browser::default()
            .get(&app, &callback(&format!("code=c&state={state}")))
            .await,
        StatusCode::BAD_REQUEST,
        "another browser",
    );
    refused(
        browser
            .get(&app, &callback(&format!("code=c&state={state}")))
            .await,
        StatusCode::BAD_REQUEST,
        "already completed",
    );
    // The provider says no.
    let state = start_sign_in(&app, &mut browser, client_id).await;
    refused(
        browser
            .get(
                &app,
                &callback(&format!(
                    "error=access_denied&error_description=user+cancelled&state={state}"
                )),
            )
            .await,
        StatusCode::FORBIDDEN,
        "Corp SSO did not sign you in: access_denied (user cancelled)",
    );
    // RFC 9207: another issuer answered.
    let state = start_sign_in(&app, &mut browser, client_id).await;
    refused(
        browser
            .get(
                &app,
                &callback(&format!(
                    "code=c&state={state}&iss=http%3A%2F%2Fevil.example"
                )),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "names the issuer",
    );
    refused(
        browser
            .get(&app, &app.url("/idp/other/callback?code=c&state=s"))
            .await,
        StatusCode::NOT_FOUND,
        "no identity provider",
    );
    let m = metrics(&app).await;
    assert!(
        m.contains("auth_upstream_logins_total{idp=\"corp\",outcome=\"refused\"} 5"),
        "{m}"
    );
    assert!(
        m.contains("auth_upstream_logins_total{idp=\"corp\",outcome=\"error\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn a_pending_sign_in_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&dir.path().join("auth.db"));
    settings.login.password = false;
    settings.identity_providers = vec![provider("corp", "Corp SSO")];
    let app = start(settings.clone()).await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let mut browser = Browser::default();
    let state = start_sign_in(&app, &mut browser, &client_id).await;
    app.stop().await;

    // Another process on the same database: the state, the browser binding and the
    // verifier are found; the code then goes to the provider's token endpoint (down).
    let again = start(settings).await;
    let (status, headers, body) = browser
        .get(
            &again,
            &again.url(&format!("/idp/corp/callback?code=c&state={state}")),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(headers.get(LOCATION).is_none());
    assert!(body.contains("Corp SSO cannot be reached"), "{body}");
}

/// Signs `browser` in as demo for `client_id` and returns the client's ID token.
async fn id_token(app: &TestApp, browser: &mut Browser, client_id: &str) -> String {
    let p = obtain_code(
        app,
        browser,
        client_id,
        &[("scope", "openid profile mcp:read")],
        "demo",
        "demo123",
    )
    .await;
    let tokens = app.exchange(client_id, &p["code"]).await;
    tokens["id_token"].as_str().unwrap().to_string()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn logout_redirects_only_with_an_id_token_hint_of_the_client_that_registered_the_uri() {
    let app = spawn_app().await;
    let good = app.register_public(&[REDIRECT]).await;
    let good_id = good["client_id"].as_str().unwrap();
    // Anyone may register a client with a redirect URI of their own.
    let evil = app.register_public(&["https://evil.example/landing"]).await;
    let evil_id = evil["client_id"].as_str().unwrap();
    let mut victim = Browser::default();
    let hint = id_token(&app, &mut victim, good_id).await;

    let signed_out = |status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str| {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(headers.get(LOCATION).is_none());
        assert!(body.contains("You are signed out"), "{body}");
        assert!(sets_cookie(headers, "as_session"));
    };
    // A link anyone can craft: the victim is signed out and stays on our page.
    let evil_uri = enc("https://evil.example/landing");
    for query in [
        format!("client_id={evil_id}&post_logout_redirect_uri={evil_uri}"),
        // The good client's hint does not vouch for another client's URI...
        format!("client_id={evil_id}&post_logout_redirect_uri={evil_uri}&id_token_hint={hint}"),
        format!("post_logout_redirect_uri={evil_uri}&id_token_hint={hint}"),
        // ... nor a garbage hint for a registered one, nor no hint at all.
        format!(
            "client_id={good_id}&post_logout_redirect_uri={}&id_token_hint=x.y.z",
            enc(REDIRECT)
        ),
        format!(
            "client_id={good_id}&post_logout_redirect_uri={}",
            enc(REDIRECT)
        ),
    ] {
        let (status, headers, body) = victim
            .get(&app, &app.url(&format!("/logout?{query}")))
            .await;
        signed_out(status, &headers, &body);
    }

    // The client that signed the user in, with its ID token: back to the client.
    let hint = id_token(&app, &mut victim, good_id).await;
    let (status, headers, _) = victim
        .get(
            &app,
            &app.url(&format!(
                "/logout?client_id={good_id}&post_logout_redirect_uri={}&id_token_hint={hint}&state=s1",
                enc(REDIRECT)
            )),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), format!("{REDIRECT}?state=s1"));
    assert!(sets_cookie(&headers, "as_session"));

    // Signed out: the next authorization asks for the password again.
    let (status, _, body) = victim.get(&app, &authorize_url(&app, good_id, &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("type=\"password\""));
    // POST works the same way (the hint in the form).
    let hint = id_token(&app, &mut victim, good_id).await;
    let (status, headers, _) = victim
        .post_form(
            &app,
            "/logout",
            &[
                ("post_logout_redirect_uri".to_string(), REDIRECT.to_string()),
                ("id_token_hint".to_string(), hint),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), REDIRECT);
    let (status, _, body) = victim.post_form(&app, "/logout", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("You are signed out"));
}

#[tokio::test]
async fn callbacks_for_unknown_sign_ins_spend_the_address_budget_and_leave_no_audit_row() {
    let app = spawn_with(|s| {
        s.identity_providers = vec![provider("corp", "Corp SSO")];
        s.rate_limit.login_per_ip_per_minute = 5;
    })
    .await;
    let mut browser = Browser::default();
    for i in 0..5 {
        let (status, headers, body) = browser
            .get(
                &app,
                &app.url(&format!("/idp/corp/callback?state=junk{i}&code=x")),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(headers.get(LOCATION).is_none());
        assert!(body.contains("start signing in again"), "{body}");
    }
    for query in ["state=junk-more&code=x", "code=x", "state=a&state=b"] {
        let (status, _, body) = browser
            .get(&app, &app.url(&format!("/idp/corp/callback?{query}")))
            .await;
        assert!(
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::BAD_REQUEST,
            "{query}: {status} {body}"
        );
        assert!(!status.is_server_error());
    }
    let (status, _, body) = browser
        .get(&app, &app.url("/idp/corp/callback?state=junk-last&code=x"))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("Too many sign-in attempts"), "{body}");
    let url = if app.settings.database.url.is_empty() {
        format!("sqlite://{}", app.settings.database.path)
    } else {
        app.settings.database.url.clone()
    };
    let store = auth_server::storage::open(&url, 1).await.unwrap();
    let rows = store.list_audit(10_000).await.unwrap();
    assert!(
        !rows.iter().any(|r| r.event.starts_with("upstream_")),
        "{:?}",
        rows.iter().map(|r| &r.event).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn starting_sign_ins_spends_the_address_login_budget() {
    let app = spawn_with(|s| {
        s.login.password = false;
        s.identity_providers = vec![provider("corp", "Corp SSO")];
        s.rate_limit.login_per_ip_per_minute = 2;
    })
    .await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    for _ in 0..2 {
        start_sign_in(&app, &mut browser, client_id).await;
    }
    let (status, headers, body) = browser
        .get(&app, &authorize_url(&app, client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(headers.get(LOCATION).is_none());
    assert!(body.contains("Too many sign-in attempts"), "{body}");
}
