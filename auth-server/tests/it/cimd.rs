//! Client ID Metadata Documents against a loopback document server (test switch on).

use actix_web::{web, App, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn document_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let id = format!("{base}/client.json");
    let server = HttpServer::new(move || {
        let id = id.clone();
        App::new()
            .route(
                "/client.json",
                web::get().to(move || {
                    let id = id.clone();
                    async move {
                        HttpResponse::Ok()
                            .insert_header(("cache-control", "max-age=60"))
                            .json(json!({
                                "client_id": id,
                                "client_name": "Metadata Client",
                                "redirect_uris": [REDIRECT],
                                "grant_types": ["authorization_code", "refresh_token"],
                                "response_types": ["code"],
                                "token_endpoint_auth_method": "none"
                            }))
                    }
                }),
            )
            .route(
                "/mismatch.json",
                web::get().to(|| async {
                    HttpResponse::Ok().json(json!({
                        "client_id": "http://127.0.0.1:1/other.json",
                        "client_name": "Liar",
                        "redirect_uris": [REDIRECT]
                    }))
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    base
}

#[tokio::test]
async fn cimd_client_completes_the_flow() {
    let docs = document_server().await;
    let app = spawn_with(|s| s.cimd.allow_insecure_cimd_for_tests = true).await;
    let client_id = format!("{docs}/client.json");
    let mut browser = Browser::default();
    let (status, _, body) = browser
        .get(&app, &authorize_url(&app, &client_id, &[]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Metadata Client"));
    let (_, _, consent) = submit_login(&app, &mut browser, &body, "demo", "demo123").await;
    assert!(
        consent.contains("127.0.0.1:"),
        "the consent page shows the document's host"
    );
    let (status, headers, _) = submit_consent(&app, &mut browser, &consent, "approve").await;
    assert!(status.is_redirection());
    let code = location_params(&headers)["code"].clone();
    let tokens = app.exchange(&client_id, &code).await;
    assert_eq!(
        decode_claims(tokens["access_token"].as_str().unwrap())["client_id"],
        client_id
    );

    // A document whose client_id differs from its URL is refused with a page.
    let (status, headers, body) = browser
        .get(
            &app,
            &authorize_url(&app, &format!("{docs}/mismatch.json"), &[]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
    assert!(body.contains("<html"));
}

#[tokio::test]
async fn cimd_loopback_is_refused_without_the_test_switch() {
    let docs = document_server().await;
    let app = spawn_app().await;
    let mut browser = Browser::default();
    let (status, headers, _) = browser
        .get(
            &app,
            &authorize_url(&app, &format!("{docs}/client.json"), &[]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(headers.get("location").is_none());
}
