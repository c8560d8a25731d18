//! `auth-server healthcheck`: the real binary, reading the same configuration file as
//! `serve`, against a server on a random port.

use std::process::{Command, Output};

use crate::helpers::spawn_app;

/// Runs `auth-server healthcheck --config FILE` where FILE sets `server.listen`, with no
/// `AUTH__...` variables from the test environment.
async fn healthcheck(listen: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auth-server.toml");
    std::fs::write(&config, format!("[server]\nlisten = \"{listen}\"\n")).unwrap();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .args(["healthcheck", "--config"])
            .arg(&config)
            .env_clear()
            .output()
            .unwrap();
        drop(dir);
        output
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_healthy_server_and_1_once_it_is_gone() {
    let app = spawn_app().await;
    let listen = app.base.trim_start_matches("http://").to_string();

    let up = healthcheck(&listen).await;
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(said.contains(&format!("{}/healthz", app.base)), "{said}");

    app.handle.stop(true).await;
    let down = healthcheck(&listen).await;
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stderr).contains("/healthz"));
}

#[tokio::test]
async fn healthcheck_probes_a_wildcard_listen_address_on_loopback() {
    let app = spawn_app().await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let up = healthcheck(&format!("0.0.0.0:{port}")).await;
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    assert!(
        String::from_utf8_lossy(&up.stdout).contains(&format!("http://127.0.0.1:{port}/healthz"))
    );
}
