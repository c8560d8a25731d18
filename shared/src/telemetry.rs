//! Logging set-up and the request-id middleware shared by both servers.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Access-log format: method, the path without its query string (queries can carry
/// codes and state), status, time and the request id. Never headers, never bodies.
pub const ACCESS_LOG_FORMAT: &str = "%a \"%{method}xi %U\" %s %Dms rid=%{x-request-id}o";

/// The access logger both servers wrap their apps in (see [`ACCESS_LOG_FORMAT`]).
pub fn access_logger() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new(ACCESS_LOG_FORMAT)
        .custom_request_replace("method", |req| req.method().to_string())
}

/// [`access_logger`] when its lines would be printed (the log filter is fixed at
/// start-up); otherwise nothing, so that requests don't pay for rendering lines
/// that are thrown away.
pub fn access_logger_if_enabled() -> actix_web::middleware::Condition<actix_web::middleware::Logger>
{
    let enabled = log::log_enabled!(target: "actix_web::middleware::logger", log::Level::Info);
    actix_web::middleware::Condition::new(enabled, access_logger())
}

/// The request id of the current request, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Initialises env_logger with `default_filter` unless `RUST_LOG` is set. Safe to
/// call more than once (tests start several servers in one process).
pub fn init_logging(default_filter: &str) {
    let _ =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
            .format_timestamp_millis()
            .try_init();
}

fn acceptable_incoming_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Propagates a sane incoming `X-Request-Id` or mints one, exposes it to handlers
/// and echoes it on the response so that the access log can print it.
pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_incoming_id(v))
        .map(str::to_owned)
        // Not a secret: the thread-local generator (no system call per request).
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(res)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rejects_injected_ids() {
        assert!(acceptable_incoming_id("abc-123_x.y"));
        assert!(!acceptable_incoming_id("a b"));
        assert!(!acceptable_incoming_id("a\nb"));
        assert!(!acceptable_incoming_id(&"a".repeat(200)));
    }
}
