//! The `healthcheck` subcommand of both binaries: one GET of the server's own health
//! endpoint on its configured listen address. Container images run it as their health
//! check, so they need no HTTP client (curl) of their own.

use std::time::Duration;

/// How long one probe may take in total; a container health check gets a few seconds.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("listen address {0:?} names no fixed port to check (expected HOST:PORT, port not 0)")]
    NoFixedPort(String),
    #[error("building the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("GET {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url} answered {status}")]
    Unhealthy {
        url: String,
        status: reqwest::StatusCode,
    },
}

/// The URL of `path` on a server bound to `listen` (`HOST:PORT`), as seen from the same
/// host: a wildcard bind address is reached on the loopback address of its family.
pub fn local_url(listen: &str, path: &str) -> Result<String, ProbeError> {
    let no_port = || ProbeError::NoFixedPort(listen.to_string());
    let (host, port) = listen.trim().rsplit_once(':').ok_or_else(no_port)?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(no_port)?;
    let host = match host {
        "" | "0.0.0.0" => "127.0.0.1",
        "[::]" => "[::1]",
        other => other,
    };
    Ok(format!("http://{host}:{port}{path}"))
}

/// GETs `path` on the server bound to `listen`; `Ok` with the URL when it answers 2xx.
pub async fn probe(listen: &str, path: &str) -> Result<String, ProbeError> {
    let url = local_url(listen, path)?;
    // A proxy configured for the server's outbound calls must not see the probe.
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(ProbeError::Client)?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|source| ProbeError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(url)
    } else {
        Err(ProbeError::Unhealthy { url, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let url = |listen| local_url(listen, "/healthz").map_err(|e| e.to_string());
        assert_eq!(
            url("0.0.0.0:3001"),
            Ok("http://127.0.0.1:3001/healthz".into())
        );
        assert_eq!(url("[::]:3000"), Ok("http://[::1]:3000/healthz".into()));
        assert_eq!(
            url("127.0.0.1:8080"),
            Ok("http://127.0.0.1:8080/healthz".into())
        );
        assert_eq!(
            url("localhost:3000"),
            Ok("http://localhost:3000/healthz".into())
        );
        assert_eq!(url(":3000"), Ok("http://127.0.0.1:3000/healthz".into()));
    }

    #[test]
    fn addresses_without_a_fixed_port_are_refused() {
        for listen in ["127.0.0.1:0", "127.0.0.1", "127.0.0.1:http", ""] {
            assert!(
                matches!(
                    local_url(listen, "/healthz"),
                    Err(ProbeError::NoFixedPort(_))
                ),
                "{listen}"
            );
        }
    }
}
