//! The operator listener: `GET /metrics` on its own socket (`server.metrics_listen`), so
//! that the public port never exposes metrics. Metrics reveal traffic, logins, refusals
//! and timings; operators reach this listener on loopback or a private network, and any
//! future admin surface belongs here too.
//!
//! The setting takes a socket address (`127.0.0.1:9464`; port 0 picks a free port, as in
//! tests and when several instances share a machine), or `""` / `"off"` to serve no
//! metrics at all.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};

/// The address to bind for a `server.metrics_listen` value; `None` when metrics are off.
pub fn listen_address(setting: &str) -> Option<&str> {
    let setting = setting.trim();
    (!setting.is_empty() && !setting.eq_ignore_ascii_case("off")).then_some(setting)
}

/// A bound operator listener serving `GET /metrics` (404 for anything else).
pub struct MetricsListener {
    local_addr: SocketAddr,
    server: Server,
}

impl MetricsListener {
    /// Binds `setting` (see [`listen_address`]) and serves what `render` returns, in the
    /// Prometheus text format. `Ok(None)` when the setting switches metrics off.
    pub fn bind<F>(setting: &str, render: F) -> std::io::Result<Option<MetricsListener>>
    where
        F: Fn() -> String + Clone + Send + 'static,
    {
        let Some(address) = listen_address(setting) else {
            return Ok(None);
        };
        let listener = TcpListener::bind(address)?;
        let local_addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            let render = render.clone();
            App::new()
                .route(
                    "/metrics",
                    web::get().to(move || {
                        let body = render();
                        async move {
                            HttpResponse::Ok()
                                .content_type(crate::metrics::CONTENT_TYPE)
                                .insert_header((header::CACHE_CONTROL, "no-store"))
                                .body(body)
                        }
                    }),
                )
                .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
        })
        // A scrape every few seconds needs no more than one thread.
        .workers(1)
        // The public server owns the process's signals; this one stops with it.
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        Ok(Some(MetricsListener { local_addr, server }))
    }

    /// The bound address (the real port when the setting asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Runs the public `server` and, next to it, the metrics listener; the listener stops
/// when the public server does (by its handle or by a signal), and the public server's
/// result is returned.
pub async fn run_alongside(
    server: Server,
    metrics: Option<MetricsListener>,
) -> std::io::Result<()> {
    let Some(metrics) = metrics else {
        return server.await;
    };
    let metrics_handle = metrics.server.handle();
    let public = async move {
        let result = server.await;
        metrics_handle.stop(true).await;
        result
    };
    let (result, metrics_result) = tokio::join!(public, metrics.server);
    if let Err(e) = metrics_result {
        log::warn!("metrics listener: {e}");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_off_switches_metrics_off() {
        assert_eq!(listen_address(""), None);
        assert_eq!(listen_address("  "), None);
        assert_eq!(listen_address("off"), None);
        assert_eq!(listen_address("OFF"), None);
        assert_eq!(listen_address("127.0.0.1:0"), Some("127.0.0.1:0"));
        assert_eq!(listen_address(" 127.0.0.1:9464 "), Some("127.0.0.1:9464"));
    }
}
