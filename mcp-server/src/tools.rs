//! The MCP server handler: server info, the tools (rmcp `#[tool]` macros, schemars
//! input schemas) and a `tools/list` filtered by the caller's scopes.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::metadata::AuthorizationServerMetadata;

use crate::admin_client::{AdminClient, RevokeTarget};
use crate::auth::{Principal, TokenVerifier};
use crate::caller::Caller;
use crate::data::{Category, ProtectedData};
use crate::policy;

pub const SERVER_NAME: &str = "mcp-server";
const INSTRUCTIONS: &str = "Demo MCP server protected by OAuth 2.1. Tools: hello_world and \
auth_status for any authenticated caller; user_profile, protected_data and oauth_info need the \
mcp:read scope; protected_data with category \"admin\" and admin_panel need mcp:admin. A call \
without the needed scope is answered with HTTP 403 insufficient_scope so the client can step up.";

/// Everything the tools need, shared by every session.
pub struct ToolContext {
    pub verifier: Arc<dyn TokenVerifier>,
    pub metadata: Option<AuthorizationServerMetadata>,
    pub issuer: String,
    pub resource: String,
    pub resource_metadata_url: String,
    pub data: ProtectedData,
    pub admin: Option<Arc<AdminClient>>,
    /// The scope policy (`[policy]`; the built-in tools' table by default).
    pub policy: Arc<crate::policy::Policy>,
}

/// The rmcp `ServerHandler`; cloned per session (three `Arc`s).
#[derive(Clone)]
pub struct McpTools {
    ctx: Arc<ToolContext>,
    router: Arc<ToolRouter<McpTools>>,
    /// The routes of the self-contained tools (a subset of `router`).
    self_contained: Arc<ToolRouter<McpTools>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct HelloArgs {
    /// Whom to greet; defaults to the caller's display name.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProtectedDataArgs {
    /// Which records: `personal` and `financial` need mcp:read, `admin` needs mcp:admin.
    pub category: Category,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
// Variant docs would turn the schema into `oneOf` + `const`, which clients (Inspector)
// render as a raw JSON editor instead of a choice; the field doc explains each value.
pub enum AdminAction {
    ListTokens,
    RevokeToken,
    UserStats,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AdminPanelArgs {
    /// list_tokens: active grants (only those of user or client `target` when given);
    /// revoke_token: revoke grant `target` (a grant id, or a token-id prefix matching one grant);
    /// user_stats: users with role, status and number of active grants.
    pub action: AdminAction,
    /// Grant id or token-id prefix (revoke_token), username or client_id filter (list_tokens).
    #[serde(default)]
    pub target: Option<String>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn text_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// The protected tools run only with a principal; the bridge made sure of that, this is
/// the second line of defence.
fn require_principal(caller: &Caller) -> Result<&Principal, CallToolResult> {
    caller
        .principal()
        .ok_or_else(|| text_error("this tool needs an authenticated caller"))
}

fn display_name(p: &Principal) -> &str {
    p.name
        .as_deref()
        .or(p.username.as_deref())
        .unwrap_or(&p.subject)
}

/// The self-contained tools: they need nothing from the MCP session (no peer, no
/// progress, no request to the client) and change nothing, so the bridge may answer a
/// plain call of one of them itself (see `crate::direct`). Being defined in this block
/// is what makes a tool self-contained.
#[tool_router(router = self_contained_tools, vis = "pub(crate)")]
impl McpTools {
    #[tool(
        description = "Greets the caller (or `name`) and says whether the caller is authenticated.",
        annotations(read_only_hint = true)
    )]
    async fn hello_world(
        &self,
        caller: Caller,
        Parameters(args): Parameters<HelloArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let requested = args
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        let text = match caller.principal() {
            Some(p) => {
                let name = requested.as_deref().unwrap_or_else(|| display_name(p));
                format!(
                    "Hello, {name}! You are authenticated as {} (client {}).",
                    p.username.as_deref().unwrap_or(&p.subject),
                    p.client_id.as_deref().unwrap_or("unknown")
                )
            }
            None => format!(
                "Hello, {}! You are not authenticated (anonymous access); protected tools will ask you to sign in.",
                requested.as_deref().unwrap_or("stranger")
            ),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    #[tool(
        description = "What the server knows about the caller's token: subject, username, client, scopes, audience, issuer, expiry and how it was verified. Never the token itself.",
        annotations(read_only_hint = true)
    )]
    async fn auth_status(&self, caller: Caller) -> Result<CallToolResult, ErrorData> {
        let mode = self.ctx.verifier.mode();
        let value = match caller.principal() {
            Some(p) => json!({
                "authenticated": true,
                "subject": p.subject,
                "username": p.username,
                "client_id": p.client_id,
                "scopes": p.scopes.iter().collect::<Vec<_>>(),
                "audience": p.audience,
                "issuer": p.issuer,
                "expires_at": p.expires_at,
                "expires_in": (p.expires_at - now()).max(0),
                "verification_mode": mode,
            }),
            None => json!({
                "authenticated": false,
                "verification_mode": mode,
                "hint": "call a protected tool to start the OAuth flow",
            }),
        };
        Ok(CallToolResult::structured(value))
    }

    #[tool(
        description = "The caller's profile from the token's claims: id, username, name, email, roles. Needs mcp:read.",
        annotations(read_only_hint = true)
    )]
    async fn user_profile(&self, caller: Caller) -> Result<CallToolResult, ErrorData> {
        let p = match require_principal(&caller) {
            Ok(p) => p,
            Err(e) => return Ok(e),
        };
        Ok(CallToolResult::structured(json!({
            "id": p.subject,
            "username": p.username,
            "name": p.name,
            "email": p.email,
            "roles": p.roles,
        })))
    }

    #[tool(
        description = "Demo records of the caller in a category (personal, financial: mcp:read; admin: mcp:admin). Stable per user.",
        annotations(read_only_hint = true)
    )]
    async fn protected_data(
        &self,
        caller: Caller,
        Parameters(args): Parameters<ProtectedDataArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let p = match require_principal(&caller) {
            Ok(p) => p,
            Err(e) => return Ok(e),
        };
        let owner = p.username.as_deref().unwrap_or(&p.subject);
        Ok(CallToolResult::structured(json!({
            "category": args.category.as_str(),
            "owner": owner,
            "records": self.ctx.data.records(owner, args.category),
        })))
    }

    #[tool(
        description = "The authorization server as discovered (issuer, endpoints), this server's canonical resource URL, supported scopes, verification mode and cached key ids. Needs mcp:read.",
        annotations(read_only_hint = true)
    )]
    async fn oauth_info(&self) -> Result<CallToolResult, ErrorData> {
        let ctx = &self.ctx;
        let m = ctx.metadata.as_ref();
        Ok(CallToolResult::structured(json!({
            "issuer": ctx.issuer,
            "authorization_endpoint": m.and_then(|m| m.authorization_endpoint.clone()),
            "token_endpoint": m.and_then(|m| m.token_endpoint.clone()),
            "registration_endpoint": m.and_then(|m| m.registration_endpoint.clone()),
            "revocation_endpoint": m.and_then(|m| m.revocation_endpoint.clone()),
            "introspection_endpoint": m.and_then(|m| m.introspection_endpoint.clone()),
            "jwks_uri": m.and_then(|m| m.jwks_uri.clone()),
            "authorization_server_scopes": m.map(|m| m.scopes_supported.clone()).unwrap_or_default(),
            "resource": ctx.resource,
            "resource_metadata": ctx.resource_metadata_url,
            "scopes_supported": [policy::BASE_SCOPE],
            "verification_mode": ctx.verifier.mode(),
            "key_ids": ctx.verifier.key_ids(),
            "admin_api": ctx.admin.as_ref().map(|a| a.base_url().to_string()),
        })))
    }
}

/// Tools that act beyond this server (the authorization server's admin API): always
/// answered through rmcp.
#[tool_router(router = outward_tools, vis = "pub(crate)")]
impl McpTools {
    #[tool(
        description = "Administration through the authorization server's admin API: list_tokens, revoke_token (target = grant id or token id prefix), user_stats. Needs mcp:admin.",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn admin_panel(
        &self,
        Parameters(args): Parameters<AdminPanelArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(admin) = self.ctx.admin.clone() else {
            return Ok(text_error(
                "the authorization server has no admin API; admin_panel is unavailable",
            ));
        };
        let target = args
            .target
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let result = match args.action {
            AdminAction::ListTokens => admin
                .list_grants()
                .await
                .map(|grants| {
                    let grants: Vec<_> = grants
                        .into_iter()
                        .filter(|g| match &target {
                            Some(t) => {
                                g.username.as_deref() == Some(t.as_str())
                                    || g.client_id.as_deref() == Some(t.as_str())
                            }
                            None => true,
                        })
                        .collect();
                    json!({ "count": grants.len(), "grants": grants })
                })
                .map_err(|e| e.to_string()),
            AdminAction::UserStats => admin.user_stats().await.map_err(|e| e.to_string()),
            AdminAction::RevokeToken => {
                let Some(target) = target else {
                    return Ok(text_error(
                        "revoke_token needs a target: a grant id or the first characters (at least 6) of a token id; list_tokens shows both",
                    ));
                };
                self.revoke(&admin, &target).await
            }
        };
        Ok(match result {
            Ok(value) => CallToolResult::structured(value),
            Err(e) => text_error(e),
        })
    }
}

impl McpTools {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        let self_contained = Self::self_contained_tools();
        let mut router = self_contained.clone() + Self::outward_tools();
        if ctx.admin.is_none() {
            router.remove_route(policy::ADMIN_PANEL);
        }
        Self {
            ctx,
            router: Arc::new(router),
            self_contained: Arc::new(self_contained),
        }
    }

    /// Tool names served (for logs and tests).
    pub fn tool_names(&self) -> Vec<String> {
        self.router
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    async fn revoke(&self, admin: &AdminClient, target: &str) -> Result<Value, String> {
        let grants = admin.list_grants().await.map_err(|e| e.to_string())?;
        let request = if grants.iter().any(|g| g.id == target) {
            RevokeTarget::GrantId(target.to_string())
        } else if target.chars().count() >= 6 {
            RevokeTarget::TokenIdPrefix(target.to_string())
        } else {
            return Err(format!(
                "no grant has id {target:?}, and a token id prefix needs at least 6 characters"
            ));
        };
        let revoked = admin.revoke(&request).await.map_err(|e| e.to_string())?;
        let mut denied = 0usize;
        for r in &revoked {
            let until = r.expires_at.unwrap_or_else(|| now() + 24 * 3600);
            for jti in &r.token_ids {
                self.ctx.verifier.deny_token_id(jti, until);
                denied += 1;
            }
        }
        Ok(json!({ "revoked": revoked, "token_ids_denied_locally": denied }))
    }

    /// Runs a `tools/call` of a self-contained tool through its rmcp route, for the
    /// bridge's direct answers. `None` leaves the call to rmcp: another tool, or
    /// arguments that do not deserialize (the tool did not run; rmcp words that
    /// answer).
    pub(crate) async fn call_self_contained(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        let (name, route) = self.self_contained.map.get_key_value(name)?;
        let caller = Caller::from_request_context(&context);
        if let Err(refused) = self.authorize(name, arguments.as_ref(), &caller) {
            return Some(Err(refused));
        }
        let mut request = CallToolRequestParams::new(name.clone());
        request.arguments = arguments;
        let response = (route.call)(ToolCallContext::new(self, request, context)).await;
        response.ok().map(Ok)
    }

    /// The scope policy as the handlers' second line of defence (the bridge answered
    /// 401/403 before). A tool that is not served is "not found" for everybody, with
    /// no scope hint.
    fn authorize(
        &self,
        name: &str,
        arguments: Option<&JsonObject>,
        caller: &Caller,
    ) -> Result<(), ErrorData> {
        if !self.router.has_route(name) {
            return Ok(());
        }
        self.ctx
            .policy
            .decide_tool(name, arguments, caller.scopes())
            .into_handler_result()
    }

    fn filtered_tools(&self, caller: &Caller) -> Vec<Tool> {
        self.router
            .list_all()
            .into_iter()
            .filter(|t| {
                self.ctx
                    .policy
                    .may_list(policy::Kind::Tool, &t.name, caller.scopes())
            })
            .collect()
    }
}

impl ServerHandler for McpTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION"))
                    .with_title("MCP server with OAuth 2.1"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = Caller::from_request_context(&context);
        let mut result = ListToolsResult::with_all_items(self.filtered_tools(&caller));
        if context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
        {
            // Filtered per caller: only the caller's client may cache it.
            result = result.with_ttl_ms(0).with_cache_scope(CacheScope::Private);
        }
        Ok(result)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.router.get(name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = Caller::from_request_context(&context);
        self.authorize(&request.name, request.arguments.as_ref(), &caller)?;
        let tcc = ToolCallContext::new(self, request, context);
        self.router.call(tcc).await
    }
}
