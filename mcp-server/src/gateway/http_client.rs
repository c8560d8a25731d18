//! The HTTP client behind rmcp's Streamable HTTP client transport: reqwest's, as rmcp
//! uses it, plus a record of how the upstream answered `initialize` (its session id,
//! and whether the answer was JSON or a stream). That record is what lets the bridge
//! forward plain calls itself ([`super::direct`]) on the session rmcp opened.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

/// How the upstream answered this connection's `initialize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitializeAnswer {
    /// `Mcp-Session-Id` the upstream gave, if any (a stateless upstream gives none).
    pub session_id: Option<Arc<str>>,
    /// The answer came as `application/json` (the upstream answers in JSON, not with
    /// a stream per request).
    pub json: bool,
}

/// reqwest's client for one upstream connection, recording its [`InitializeAnswer`].
#[derive(Clone)]
pub struct RecordingClient {
    inner: reqwest::Client,
    initialize: Arc<OnceLock<InitializeAnswer>>,
}

impl RecordingClient {
    pub fn new(inner: reqwest::Client) -> Self {
        RecordingClient {
            inner,
            initialize: Arc::new(OnceLock::new()),
        }
    }

    /// Shared with the transport: filled when `initialize` is answered.
    pub fn initialize_answer(&self) -> Arc<OnceLock<InitializeAnswer>> {
        self.initialize.clone()
    }
}

fn is_initialize(message: &ClientJsonRpcMessage) -> bool {
    matches!(
        message,
        JsonRpcMessage::Request(r) if matches!(r.request, ClientRequest::InitializeRequest(_))
    )
}

impl StreamableHttpClient for RecordingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let initialize = is_initialize(&message);
        let response = self
            .inner
            .post_message_with_response_limits(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                limits,
            )
            .await?;
        if initialize {
            let answer = match &response {
                StreamableHttpPostResponse::Json(_, session) => Some(InitializeAnswer {
                    session_id: session.as_deref().map(Arc::from),
                    json: true,
                }),
                StreamableHttpPostResponse::Sse(_, session) => Some(InitializeAnswer {
                    session_id: session.as_deref().map(Arc::from),
                    json: false,
                }),
                _ => None,
            };
            if let Some(answer) = answer {
                let _ = self.initialize.set(answer);
            }
        }
        Ok(response)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
