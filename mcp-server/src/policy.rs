//! The scope policy, in one place: which tool needs which scope. The bridge asks it
//! before a `tools/call` reaches rmcp (to answer 401/403 challenges at the HTTP level),
//! `tools/list` asks it to hide what the caller may not call, and the tool handler asks
//! it again as a second line of defence.

use serde_json::{Map, Value};
use shared::scopes::{MCP_ADMIN, MCP_READ};
use shared::ScopeSet;

pub const HELLO_WORLD: &str = "hello_world";
pub const AUTH_STATUS: &str = "auth_status";
pub const USER_PROFILE: &str = "user_profile";
pub const PROTECTED_DATA: &str = "protected_data";
pub const OAUTH_INFO: &str = "oauth_info";
pub const ADMIN_PANEL: &str = "admin_panel";

/// The scopes every protected operation of this server starts from; what the 401
/// challenge advertises and the PRM's `scopes_supported`.
pub const BASE_SCOPE: &str = MCP_READ;

/// The scope needed to see and call `tool` at all; `None` for public tools (any valid
/// token, or no token in anonymous mode). Unknown tools need nothing here: rmcp
/// answers them with "tool not found".
pub fn tool_scope(tool: &str) -> Option<&'static str> {
    match tool {
        HELLO_WORLD | AUTH_STATUS => None,
        USER_PROFILE | PROTECTED_DATA | OAUTH_INFO => Some(MCP_READ),
        ADMIN_PANEL => Some(MCP_ADMIN),
        _ => None,
    }
}

/// The only argument the policy looks at: `category` (when it is a string).
pub fn category_argument(arguments: Option<&Map<String, Value>>) -> Option<&str> {
    arguments
        .and_then(|a| a.get("category"))
        .and_then(Value::as_str)
}

/// The scopes a call needs as static names (at most two; no allocation, this runs on
/// every `tools/call`).
fn needed_scopes(tool: &str, category: Option<&str>) -> [Option<&'static str>; 2] {
    let admin_category =
        tool == PROTECTED_DATA && category.is_some_and(|c| c.trim().eq_ignore_ascii_case("admin"));
    [tool_scope(tool), admin_category.then_some(MCP_ADMIN)]
}

/// What the caller gets for a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No token, and the call needs one: 401 with `scope` in the challenge.
    Unauthenticated {
        scope: ScopeSet,
    },
    /// A valid token lacking scope: 403 `insufficient_scope`; `scope` is the union of
    /// what is needed and what is already granted, so one re-authorization suffices.
    InsufficientScope {
        needed: ScopeSet,
        scope: ScopeSet,
    },
}

/// Decides a call of `tool` by a caller holding `granted` (`None` = anonymous).
pub fn decide(
    tool: &str,
    arguments: Option<&Map<String, Value>>,
    granted: Option<&ScopeSet>,
) -> Decision {
    decide_call(tool, category_argument(arguments), granted)
}

/// [`decide`] with the `category` argument already extracted (the bridge reads it
/// straight from the request body).
pub fn decide_call(tool: &str, category: Option<&str>, granted: Option<&ScopeSet>) -> Decision {
    let static_needed = needed_scopes(tool, category);
    let mut needed_iter = static_needed.iter().flatten();
    let allowed = match granted {
        _ if needed_iter.clone().next().is_none() => true,
        Some(granted) => needed_iter.all(|scope| granted.grants(scope)),
        None => false,
    };
    if allowed {
        return Decision::Allow;
    }
    // Refusals only: build the sets for the challenge.
    let needed = ScopeSet::from_iter(static_needed.into_iter().flatten());
    match granted {
        None => Decision::Unauthenticated { scope: needed },
        Some(granted) => Decision::InsufficientScope {
            scope: needed.union(granted),
            needed,
        },
    }
}

/// Whether `tools/list` shows `tool` to a caller holding `granted` (`None` = anonymous).
pub fn may_list(tool: &str, granted: Option<&ScopeSet>) -> bool {
    match (tool_scope(tool), granted) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(scope), Some(granted)) => granted.grants(scope),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scopes(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn public_tools_need_nothing() {
        assert_eq!(decide(HELLO_WORLD, None, None), Decision::Allow);
        assert_eq!(
            decide(AUTH_STATUS, None, Some(&scopes("openid"))),
            Decision::Allow
        );
    }

    #[test]
    fn read_tools_need_mcp_read() {
        assert_eq!(
            decide(USER_PROFILE, None, None),
            Decision::Unauthenticated {
                scope: scopes("mcp:read")
            }
        );
        assert_eq!(
            decide(OAUTH_INFO, None, Some(&scopes("openid profile"))),
            Decision::InsufficientScope {
                needed: scopes("mcp:read"),
                scope: scopes("mcp:read openid profile"),
            }
        );
        assert_eq!(
            decide(USER_PROFILE, None, Some(&scopes("mcp:read"))),
            Decision::Allow
        );
    }

    #[test]
    fn admin_category_and_admin_panel_need_mcp_admin() {
        let a = args(json!({"category": "admin"}));
        assert_eq!(
            decide(PROTECTED_DATA, Some(&a), Some(&scopes("mcp:read openid"))),
            Decision::InsufficientScope {
                needed: scopes("mcp:read mcp:admin"),
                scope: scopes("mcp:admin mcp:read openid"),
            }
        );
        assert_eq!(
            decide(PROTECTED_DATA, Some(&a), Some(&scopes("mcp:admin"))),
            Decision::Allow
        );
        let p = args(json!({"category": "personal"}));
        assert_eq!(
            decide(PROTECTED_DATA, Some(&p), Some(&scopes("mcp:read"))),
            Decision::Allow
        );
        assert_eq!(
            decide(ADMIN_PANEL, None, Some(&scopes("mcp:admin"))),
            Decision::Allow
        );
        assert!(matches!(
            decide(ADMIN_PANEL, None, Some(&scopes("mcp:read"))),
            Decision::InsufficientScope { .. }
        ));
    }

    #[test]
    fn listing_follows_the_base_scope() {
        assert!(may_list(HELLO_WORLD, None));
        assert!(!may_list(USER_PROFILE, None));
        assert!(!may_list(USER_PROFILE, Some(&scopes("openid"))));
        assert!(may_list(PROTECTED_DATA, Some(&scopes("mcp:read"))));
        assert!(!may_list(ADMIN_PANEL, Some(&scopes("mcp:read"))));
        assert!(may_list(ADMIN_PANEL, Some(&scopes("mcp:admin"))));
        assert!(may_list(USER_PROFILE, Some(&scopes("mcp:admin"))));
    }
}
