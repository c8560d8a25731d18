//! rmcp's in-memory session manager, with session ids that name the replica holding
//! the session when `transport.session_route` is set: `<route>.<random UUID>`.
//!
//! A legacy MCP session lives in the process that answered `initialize`, and its id is
//! all a load balancer sees of it. A hash of the id cannot find that process (the id is
//! made after the balancer picked a replica for `initialize`, so it hashes anywhere);
//! a route in front of it can: deploy/nginx/mcp.conf sends `<route>.*` to the replica
//! configured with that route. Without a route the ids are rmcp's own random UUIDs.
//! Everything but the id is rmcp's `LocalSessionManager`.

use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::common::server_side_http::session_id;
use rmcp::transport::streamable_http_server::session::local::{
    create_local_session, LocalSessionManager, LocalSessionManagerError, LocalSessionWorker,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};
use rmcp::transport::WorkerTransport;

/// Longest accepted `transport.session_route`.
pub const MAX_ROUTE_LEN: usize = 32;

/// Whether `route` can lead a session id: 1 to [`MAX_ROUTE_LEN`] ASCII letters, digits,
/// `-` or `_` (visible ASCII as the spec requires of ids, and no `.`, which ends it).
pub fn is_valid_route(route: &str) -> bool {
    !route.is_empty()
        && route.len() <= MAX_ROUTE_LEN
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub struct RoutedSessionManager {
    inner: LocalSessionManager,
    /// `"<route>."`, or `None` for plain ids.
    prefix: Option<String>,
}

impl RoutedSessionManager {
    /// `route`: `None` or empty for rmcp's plain ids; validated by the settings.
    pub fn new(inner: LocalSessionManager, route: Option<&str>) -> Self {
        let prefix = route
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| format!("{r}."));
        RoutedSessionManager { inner, prefix }
    }

    /// The live sessions, as rmcp's manager keeps them.
    pub fn local(&self) -> &LocalSessionManager {
        &self.inner
    }

    fn new_id(&self) -> SessionId {
        match &self.prefix {
            Some(prefix) => format!("{prefix}{}", session_id()).into(),
            None => session_id(),
        }
    }
}

impl SessionManager for RoutedSessionManager {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    /// As `LocalSessionManager::create_session`, with this replica's id. That manager
    /// has no event store (none is configured), so neither does a session made here.
    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        if self.prefix.is_none() {
            return self.inner.create_session().await;
        }
        let id = self.new_id();
        let (handle, worker) = create_local_session(id.clone(), self.inner.session_config.clone());
        self.inner.sessions.write().await.insert(id.clone(), handle);
        Ok((id, WorkerTransport::spawn(worker)))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.inner.close_session(id).await
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }

    fn event_store(&self) -> Option<std::sync::Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_short_visible_tokens_without_dots() {
        for ok in ["mcp-1", "a", "eu_west_2", &"x".repeat(MAX_ROUTE_LEN)] {
            assert!(is_valid_route(ok), "{ok}");
        }
        let too_long = "x".repeat(MAX_ROUTE_LEN + 1);
        for bad in ["", "a.b", "a b", "é", "a/b", "a:b", too_long.as_str()] {
            assert!(!is_valid_route(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn ids_carry_the_route_and_stay_unique() {
        let routed = RoutedSessionManager::new(LocalSessionManager::default(), Some("mcp-2"));
        let (a, _ta) = routed
            .create_session()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (b, _tb) = routed
            .create_session()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            a.starts_with("mcp-2.") && b.starts_with("mcp-2."),
            "{a} {b}"
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), "mcp-2.".len() + 36, "{a}");
        assert!(matches!(routed.has_session(&a).await, Ok(true)));
        assert!(matches!(routed.local().has_session(&b).await, Ok(true)));
        let other: SessionId = format!("mcp-1.{}", &a["mcp-2.".len()..]).into();
        assert!(matches!(routed.has_session(&other).await, Ok(false)));

        let plain = RoutedSessionManager::new(LocalSessionManager::default(), Some(" "));
        let (id, _t) = plain
            .create_session()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.len(), 36, "a plain UUID: {id}");
        assert!(!id.contains('.'));
    }
}
