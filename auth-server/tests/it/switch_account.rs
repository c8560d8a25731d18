//! A user who asks for scopes their account cannot hold sees the consent page (never a
//! silent downgrade, even with remembered consent), is told what is withheld, and can
//! sign in as someone else from there, despite the existing session cookie.

use reqwest::StatusCode;

use crate::helpers::*;

fn html_unescape(s: &str) -> String {
    s.replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#47;", "/")
        .replace("&#61;", "=")
}

fn switch_link(body: &str) -> String {
    let start = body
        .find("href=\"authorize?")
        .expect("a switch-account link")
        + "href=\"".len();
    let end = body[start..].find('"').unwrap() + start;
    html_unescape(&body[start..end])
}

#[tokio::test]
async fn withheld_scopes_show_consent_and_offer_another_account() {
    let app = spawn_app().await;
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap();
    let mut browser = Browser::default();

    // demo consents to mcp:read once; the same request is then answered directly.
    let first = obtain_code(
        &app,
        &mut browser,
        client_id,
        &[("scope", "mcp:read")],
        "demo",
        "demo123",
    )
    .await;
    assert!(first.contains_key("code"), "{first:?}");
    let (status, headers, _) = browser
        .get(
            &app,
            &authorize_url(&app, client_id, &[("scope", "mcp:read")]),
        )
        .await;
    assert!(status.is_redirection(), "remembered consent skips the page");
    assert!(location_params(&headers).contains_key("code"));

    // Asking for mcp:admin: the page is shown although mcp:read alone is remembered.
    let (status, _, body) = browser
        .get(
            &app,
            &authorize_url(&app, client_id, &[("scope", "mcp:read mcp:admin")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("value=\"approve\""), "{body}");
    assert!(
        body.contains("Not available to <strong>demo</strong>"),
        "{body}"
    );
    let withheld_note = &body[body.find("Not available to").unwrap()..];
    assert!(withheld_note.contains("mcp:admin"), "{withheld_note}");

    // The switch link re-runs the request with prompt=login: the login page, not consent.
    let link = switch_link(&body);
    assert!(link.contains("prompt=login"), "{link}");
    assert!(
        link.contains("scope=mcp%3Aread+mcp%3Aadmin")
            || link.contains("scope=mcp%3Aread%20mcp%3Aadmin"),
        "{link}"
    );
    let (status, _, body) = browser.get(&app, &app.url(&format!("/{link}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("name=\"password\""),
        "login page expected: {body}"
    );

    // The admin signs in, sees mcp:admin offered with nothing withheld, and gets it.
    let (status, _, body) = submit_login(&app, &mut browser, &body, "admin", "admin123").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("mcp:admin"), "{body}");
    assert!(!body.contains("Not available to"), "{body}");
    let (status, headers, _) = submit_consent(&app, &mut browser, &body, "approve").await;
    assert!(status.is_redirection());
    let code = location_params(&headers)["code"].clone();
    let tokens = app.exchange(client_id, &code).await;
    let claims = decode_claims(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["preferred_username"], "admin");
    assert!(
        claims["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "mcp:admin"),
        "{claims}"
    );
}
