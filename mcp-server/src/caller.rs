//! Who is calling, as seen from inside the MCP handlers. The bridge verifies the token
//! and puts a [`Caller`] into the `http::Request` extensions; rmcp hands the request's
//! `http::request::Parts` to every handler through `RequestContext.extensions`, and
//! [`Caller`] is an rmcp extractor so a `#[tool]` fn can take it as an argument.

use std::sync::Arc;

use rmcp::handler::server::common::FromContextPart;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use shared::ScopeSet;

use crate::auth::Principal;

/// The verified principal, or `None` for an anonymous caller (anonymous mode only).
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Arc<Principal>>);

impl Caller {
    pub fn anonymous() -> Self {
        Caller(None)
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_deref()
    }

    pub fn scopes(&self) -> Option<&ScopeSet> {
        self.0.as_deref().map(|p| &p.scopes)
    }

    /// The caller recorded by the bridge for this request: in the HTTP request rmcp
    /// received, or in the context itself for a call the bridge answers directly.
    /// Anonymous when absent (a request that did not come through the bridge carries
    /// no authority).
    pub fn from_request_context(context: &RequestContext<RoleServer>) -> Self {
        context
            .extensions
            .get::<Caller>()
            .or_else(|| {
                context
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<Caller>())
            })
            .cloned()
            .unwrap_or_default()
    }
}

impl<S> FromContextPart<ToolCallContext<'_, S>> for Caller {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, rmcp::ErrorData> {
        Ok(Caller::from_request_context(context.request_context()))
    }
}
