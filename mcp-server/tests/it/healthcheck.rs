//! `mcp-server healthcheck [--ready]`: the real binary, reading the same configuration
//! file as `serve`, against a server on a random port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use crate::mcp::{spawn, spawn_with};

/// Runs `mcp-server healthcheck --config FILE [extra]` where FILE sets `server.listen`,
/// with no `MCP__...` variables from the test environment.
async fn healthcheck(listen: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcp-server.toml");
    std::fs::write(&config, format!("[server]\nlisten = \"{listen}\"\n")).unwrap();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_mcp-server"))
            .args(["healthcheck", "--config"])
            .arg(&config)
            .args(extra)
            .env_clear()
            .output()
            .unwrap();
        drop(dir);
        output
    })
    .await
    .unwrap()
}

fn listen_of(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn healthcheck_exits_0_when_live_and_ready() {
    let s = spawn().await;
    let live = healthcheck(&listen_of(&s.base), &[]).await;
    assert_eq!(live.status.code(), Some(0), "{live:?}");
    assert!(String::from_utf8_lossy(&live.stdout).contains(&format!("{}/healthz", s.base)));
    let ready = healthcheck(&listen_of(&s.base), &["--ready"]).await;
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).contains(&format!("{}/readyz", s.base)));
}

#[tokio::test]
async fn healthcheck_ready_exits_1_while_no_keys_can_be_loaded() {
    let s = spawn_with(|_, fake| fake.set_down(true)).await;
    let live = healthcheck(&listen_of(&s.base), &[]).await;
    assert_eq!(live.status.code(), Some(0), "{live:?}");
    let ready = healthcheck(&listen_of(&s.base), &["--ready"]).await;
    assert_eq!(ready.status.code(), Some(1), "{ready:?}");
    assert!(
        String::from_utf8_lossy(&ready.stderr).contains("503"),
        "{ready:?}"
    );
}

#[tokio::test]
async fn healthcheck_exits_1_when_nothing_listens() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = free.local_addr().unwrap().to_string();
    drop(free);
    let down = healthcheck(&listen, &[]).await;
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("/healthz"),
        "{down:?}"
    );
}
