//! The happy path: register → authorize → login → consent → token → refresh →
//! revoke → introspect, plus session and consent memory.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn full_flow_register_authorize_token_refresh_revoke_introspect() {
    let app = spawn_app().await;

    // Metadata
    let meta: serde_json::Value = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], app.issuer());
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    let oidc: serde_json::Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(oidc["jwks_uri"].is_string());
    assert!(oidc["subject_types_supported"].is_array());
    assert!(oidc["id_token_signing_alg_values_supported"].is_array());

    // DCR
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    assert_eq!(client["redirect_uris"], serde_json::json!([REDIRECT]));

    // Authorize: login page first, with the client name and redirect host.
    let mut browser = Browser::default();
    let (status, headers, body) = browser
        .get(
            &app,
            &authorize_url(
                &app,
                client_id,
                &[("scope", "mcp:read openid profile email offline_access")],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Test Client"));
    assert!(body.contains("localhost:6274"));
    assert!(body.contains("demo123"), "demo mode hints the demo users");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(headers.get("access-control-allow-origin").is_none());

    // Wrong password shows the form again.
    let (status, _, failed) =
        submit_login(&app, &mut browser, &body, "demo", "wrong-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(failed.contains("Invalid username or password"));

    // Login → consent page.
    let (status, headers, consent) =
        submit_login(&app, &mut browser, &failed, "demo", "demo123").await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie: Vec<_> = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("as_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly"));
    assert!(session.contains("SameSite=Lax"));
    assert!(consent.contains("value=\"deny\""));
    assert!(consent.contains("mcp:read"));
    assert!(
        !consent.contains("mcp:admin"),
        "a user cannot get mcp:admin"
    );

    // Approve → redirect with code, state, iss.
    let (status, headers, _) = submit_consent(&app, &mut browser, &consent, "approve").await;
    assert!(status.is_redirection());
    assert!(location(&headers).starts_with(REDIRECT));
    let params = location_params(&headers);
    assert_eq!(params["state"], "xyz-state");
    assert_eq!(params["iss"], app.issuer());
    let code = &params["code"];

    // Token
    let tokens = app.exchange(client_id, code).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert!(tokens["id_token"].is_string());
    let id = decode_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "demo@example.com");
    assert_eq!(id["email_verified"], true, "with every email");
    assert_eq!(tokens["token_type"], "Bearer");
    let header = decode_header(access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(header["kid"].is_string());
    let claims = decode_claims(access);
    assert_eq!(claims["iss"], app.issuer());
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["preferred_username"], "demo");
    assert_eq!(claims["roles"], serde_json::json!(["user"]));
    assert_eq!(claims["name"], "Demo User");
    assert_eq!(claims["email"], "demo@example.com");
    for c in ["exp", "iat", "nbf", "jti", "sub", "scope"] {
        assert!(!claims[c].is_null(), "claim {c}");
    }

    // Userinfo
    let info: serde_json::Value = app
        .http
        .get(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["preferred_username"], "demo");
    assert_eq!(info["email"], "demo@example.com");
    assert_eq!(info["email_verified"], true);

    // Introspect the access token and the refresh token.
    let intro = app.introspect(access).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["username"], "demo");
    assert_eq!(intro["token_type"], "access_token");
    assert_eq!(intro["aud"], RESOURCE);
    let intro = app.introspect(refresh).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["token_type"], "refresh_token");

    // Refresh: rotation.
    let res = app.refresh(client_id, refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let refreshed: serde_json::Value = res.json().await.unwrap();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(refresh2, refresh);
    assert_eq!(
        decode_claims(refreshed["access_token"].as_str().unwrap())["aud"],
        RESOURCE
    );

    // Revoke the new refresh token: the whole grant goes.
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", refresh2), ("client_id", client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.introspect(refresh2).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        app.introspect(refreshed["access_token"].as_str().unwrap())
            .await["active"],
        false
    );
    assert_eq!(app.introspect(access).await["active"], false);
    assert_eq!(
        app.refresh(client_id, refresh2).await.status(),
        StatusCode::BAD_REQUEST
    );

    // Revoking garbage is still 200 (RFC 7009).
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", "garbage"), ("client_id", client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn session_skips_login_and_consent_is_remembered_and_prompt_login_forces_password() {
    let app = spawn_app().await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let first = obtain_code(&app, &mut browser, client_id, &[], "demo", "demo123").await;
    assert!(first.contains_key("code"));

    // Same browser, same scopes: straight redirect.
    let (status, headers, _) = browser
        .get(&app, &authorize_url(&app, client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(location_params(&headers).contains_key("code"));

    // prompt=consent asks again; prompt=none in a fresh browser says login_required.
    let (status, _, body) = browser
        .get(
            &app,
            &authorize_url(&app, client_id, &[("prompt", "consent")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("value=\"approve\""));
    let (status, headers, _) = Browser::default()
        .get(&app, &authorize_url(&app, client_id, &[("prompt", "none")]))
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location_params(&headers)["error"], "login_required");

    // More scopes: consent again, but no login.
    let (status, _, body) = browser
        .get(
            &app,
            &authorize_url(&app, client_id, &[("scope", "mcp:read email")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("value=\"approve\""));
    assert!(!body.contains("name=\"password\""));

    // prompt=login shows the login page despite the session.
    let (status, _, body) = browser
        .get(
            &app,
            &authorize_url(&app, client_id, &[("prompt", "login")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("name=\"password\""));

    // A fresh browser must log in.
    let mut other = Browser::default();
    let (_, _, body) = other.get(&app, &authorize_url(&app, client_id, &[])).await;
    assert!(body.contains("name=\"password\""));
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_admin_gets_admin_scope() {
    let app = spawn_app().await;
    // Registered with the scope of its first challenge; a later step-up still works.
    let res = app
        .http
        .post(app.url("/register"))
        .json(&serde_json::json!({
            "client_name": "Stepper",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "mcp:read"
        }))
        .send()
        .await
        .unwrap();
    let client: serde_json::Value = res.json().await.unwrap();
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let (_, _, body) = browser
        .get(
            &app,
            &authorize_url(&app, client_id, &[("scope", "mcp:admin")]),
        )
        .await;
    let (_, _, consent) = submit_login(&app, &mut browser, &body, "admin", "admin123").await;
    assert!(consent.contains("mcp:admin"));
    let (status, headers, _) = submit_consent(&app, &mut browser, &consent, "deny").await;
    assert!(status.is_redirection());
    let params = location_params(&headers);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "xyz-state");
    assert_eq!(params["iss"], app.issuer());

    let params = obtain_code(
        &app,
        &mut browser,
        client_id,
        &[("scope", "mcp:admin")],
        "admin",
        "admin123",
    )
    .await;
    let tokens = app.exchange(client_id, &params["code"]).await;
    let claims = decode_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["scope"], "mcp:admin");
    assert_eq!(claims["roles"], serde_json::json!(["user", "admin"]));
}

#[tokio::test]
async fn csrf_token_is_required_on_forms() {
    let app = spawn_app().await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();
    let (_, _, body) = browser
        .get(&app, &authorize_url(&app, client_id, &[]))
        .await;
    let (_, mut fields) = parse_form(&body);
    for f in fields.iter_mut() {
        if f.0 == "csrf_token" {
            f.1 = "forged".into();
        }
    }
    fields.push(("username".into(), "demo".into()));
    fields.push(("password".into(), "demo123".into()));
    let (status, _, page) = browser.post_form(&app, "/login", &fields).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("<html"));

    // Without the cookie the genuine token does not help either.
    let (_, fields) = parse_form(&body);
    let mut cookieless = Browser::default();
    let mut fields = fields;
    fields.push(("username".into(), "demo".into()));
    fields.push(("password".into(), "demo123".into()));
    let (status, _, _) = cookieless.post_form(&app, "/login", &fields).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
