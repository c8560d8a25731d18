//! What the logs contain: a request id on every access-log line, and never a
//! password, code, token or secret, even at debug level.

use std::sync::{Mutex, OnceLock};

use reqwest::StatusCode;

use crate::helpers::*;

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }
    fn flush(&self) {}
}

/// Installs (once per test binary) a logger that keeps every record at every level.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

fn lines_with(needle: &str) -> Vec<String> {
    capture()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

#[tokio::test]
async fn access_log_carries_the_request_id_and_no_secret_is_logged() {
    capture();
    let app = spawn_app().await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    let rid = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(rid.len() >= 16);
    let logged = lines_with(&format!("rid={rid}"));
    assert_eq!(logged.len(), 1, "one access-log line with rid={rid}");
    assert!(logged[0].contains("GET /healthz"));

    // A full flow at trace level: register, login, consent, code, tokens, refresh,
    // introspection, revocation, client credentials, bad passwords.
    let client = app.register_public(&[REDIRECT]).await;
    let client_id = client["client_id"].as_str().unwrap().to_string();
    let registration_token = client["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut browser = Browser::default();
    let (_, _, html) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    let (status, _, _) = submit_login(&app, &mut browser, &html, "demo", "Wr0ngPassw0rd!").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
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
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let res = app.refresh(&client_id, &refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: serde_json::Value = res.json().await.unwrap();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_string();
    app.introspect(&refresh2).await;
    let service = app.client_credentials(None).await;
    let service_token = service["access_token"].as_str().unwrap().to_string();
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", refresh2.as_str()), ("client_id", &client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let session = browser.cookies.get("as_session").cloned().unwrap();
    let csrf = browser.cookies.get("as_csrf").cloned().unwrap();

    let secrets = [
        ("password", "demo123".to_string()),
        ("wrong password", "Wr0ngPassw0rd!".to_string()),
        ("client secret", "demo-mcp-server-secret".to_string()),
        ("code", code),
        ("access token", access[access.len() - 40..].to_string()),
        ("refresh token", refresh),
        ("rotated refresh token", refresh2),
        (
            "service token",
            service_token[service_token.len() - 40..].to_string(),
        ),
        ("registration token", registration_token),
        ("session cookie", session),
        ("csrf cookie", csrf),
        ("pkce verifier", VERIFIER.to_string()),
    ];
    for (what, value) in secrets {
        let leaked = lines_with(&value);
        assert!(leaked.is_empty(), "the {what} was logged: {leaked:?}");
    }
}
