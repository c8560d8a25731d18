//! The scope policy, in one place: which tool, prompt or resource needs which scope.
//! The rules come from the `[policy]` configuration (built-in defaults: the demo
//! tools' table below, also written out in config/mcp-server.toml); the same engine
//! serves the built-in tools and the tools of an upstream MCP server (gateway mode).
//!
//! The bridge asks it before a request reaches rmcp (to answer 401/403 challenges at
//! the HTTP level), `tools/list` (and the prompt and resource lists) ask it to hide
//! what the caller may not use, and the handlers ask it again as a second line of
//! defence.
//!
//! Rules are tried in order; the first whose name (exact or glob: `*` any run of
//! characters, `?` one character) matches, and whose `arguments` conditions all hold,
//! decides. A name no rule matches needs `default_scope`. A rule's `scope` is a
//! space-separated list, all needed; an empty scope means any valid token (and no
//! token at all in anonymous mode).

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
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

/// One `[[policy.tools]]` (`[[policy.prompts]]`, `[[policy.resources]]`) entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// Tool or prompt name, or resource URI: exact, or a glob with `*` and `?`.
    #[serde(alias = "uri")]
    pub name: String,
    /// Space-separated scopes, all needed; `""` = any valid token.
    pub scope: String,
    /// Only when these string arguments have these values (trimmed, case-insensitive);
    /// tools only. `tools/list` ignores such conditional rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<ArgumentCondition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentCondition {
    pub name: String,
    pub value: String,
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    /// What a tool, prompt or resource no rule matches needs (`""`: any valid token).
    pub default_scope: String,
    /// Tool rules. Absent: the built-in tools' table without an upstream, none with one.
    pub tools: Option<Vec<RuleSettings>>,
    pub prompts: Vec<RuleSettings>,
    pub resources: Vec<RuleSettings>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            default_scope: BASE_SCOPE.into(),
            tools: None,
            prompts: Vec::new(),
            resources: Vec::new(),
        }
    }
}

fn rule(name: &str, scope: &str) -> RuleSettings {
    RuleSettings {
        name: name.into(),
        scope: scope.into(),
        arguments: Vec::new(),
    }
}

/// The built-in tools' rules (what `tools` means when absent and no upstream is
/// configured): the public tools need any token, the admin category of
/// `protected_data` and `admin_panel` need `mcp:admin`, the others `mcp:read`.
pub fn builtin_tool_rules() -> Vec<RuleSettings> {
    vec![
        rule(HELLO_WORLD, ""),
        rule(AUTH_STATUS, ""),
        rule(USER_PROFILE, MCP_READ),
        RuleSettings {
            arguments: vec![ArgumentCondition {
                name: "category".into(),
                value: "admin".into(),
            }],
            ..rule(PROTECTED_DATA, "mcp:read mcp:admin")
        },
        rule(PROTECTED_DATA, MCP_READ),
        rule(OAUTH_INFO, MCP_READ),
        rule(ADMIN_PANEL, MCP_ADMIN),
    ]
}

/// What the caller gets for a call.
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

impl Decision {
    /// The decision as a handler's answer (the second line of defence, after the
    /// bridge's 401/403): a refusal is a JSON-RPC error naming the needed scopes.
    pub fn into_handler_result(self) -> Result<(), rmcp::ErrorData> {
        match self {
            Decision::Allow => Ok(()),
            Decision::Unauthenticated { scope }
            | Decision::InsufficientScope { needed: scope, .. } => Err(rmcp::ErrorData::new(
                rmcp::model::ErrorCode(crate::error::JSONRPC_UNAUTHORIZED as i32),
                format!("this call needs the scope(s) {scope}"),
                None,
            )),
        }
    }
}

/// Which kind of name a rule list is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

#[derive(Debug, Clone)]
struct Need {
    /// In `ScopeSet` order (sorted), checked one by one without allocating.
    scopes: Vec<String>,
    set: ScopeSet,
}

impl Need {
    fn parse(raw: &str, key: &str) -> Result<Need, String> {
        let set = ScopeSet::parse(raw.trim())
            .map_err(|e| format!("{key}: {e}; use space-separated scope names"))?;
        Ok(Need {
            scopes: set.iter().map(str::to_string).collect(),
            set,
        })
    }

    fn granted_to(&self, granted: Option<&ScopeSet>) -> bool {
        match granted {
            _ if self.scopes.is_empty() => true,
            Some(granted) => self.scopes.iter().all(|s| granted.grants(s)),
            None => false,
        }
    }
}

#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Glob(Vec<char>),
}

impl Pattern {
    fn new(raw: &str) -> Pattern {
        if raw.contains(['*', '?']) {
            Pattern::Glob(raw.chars().collect())
        } else {
            Pattern::Exact(raw.to_string())
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(exact) => exact == name,
            Pattern::Glob(glob) => glob_match(glob, name),
        }
    }
}

/// `*` matches any run of characters (also empty, also `/`), `?` exactly one.
/// Iterative with one backtracking point: linear in practice, never exponential.
fn glob_match(pattern: &[char], name: &str) -> bool {
    let text: Vec<char> = name.chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    when: Vec<(String, String)>,
    need: Need,
}

impl Rule {
    fn compile(settings: &RuleSettings, key: &str, kind: Kind) -> Result<Rule, String> {
        let name = settings.name.trim();
        if name.is_empty() {
            return Err(format!("{key}.name is empty"));
        }
        if kind != Kind::Tool && !settings.arguments.is_empty() {
            return Err(format!("{key}.arguments: only tool rules take arguments"));
        }
        let mut when = Vec::with_capacity(settings.arguments.len());
        for condition in &settings.arguments {
            if condition.name.trim().is_empty() {
                return Err(format!("{key}.arguments: an argument name is empty"));
            }
            when.push((
                condition.name.trim().to_string(),
                condition.value.trim().to_string(),
            ));
        }
        Ok(Rule {
            pattern: Pattern::new(name),
            when,
            need: Need::parse(&settings.scope, &format!("{key}.scope"))?,
        })
    }

    fn applies<'a>(&self, name: &str, argument: &impl Fn(&str) -> Option<&'a str>) -> bool {
        self.pattern.matches(name)
            && self.when.iter().all(|(key, value)| {
                argument(key).is_some_and(|actual| actual.trim().eq_ignore_ascii_case(value))
            })
    }
}

/// The compiled `[policy]`.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Need,
    tools: Vec<Rule>,
    prompts: Vec<Rule>,
    resources: Vec<Rule>,
}

/// The policy of the built-in tools with the default settings (the free functions
/// below decide with it).
static BUILTIN: LazyLock<Policy> = LazyLock::new(|| {
    Policy::from_settings(&PolicySettings::default(), false).unwrap_or_else(|_| Policy::empty())
});

impl Policy {
    /// Compiles `settings`; `gateway` says whether an upstream's tools are served (an
    /// absent `tools` list then means no rules, rather than the built-in tools' table).
    pub fn from_settings(settings: &PolicySettings, gateway: bool) -> Result<Policy, String> {
        let compile = |rules: &[RuleSettings], key: &str, kind: Kind| {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| Rule::compile(r, &format!("{key}[{i}]"), kind))
                .collect::<Result<Vec<_>, _>>()
        };
        let builtin;
        let tools = match &settings.tools {
            Some(tools) => tools.as_slice(),
            None if gateway => &[],
            None => {
                builtin = builtin_tool_rules();
                builtin.as_slice()
            }
        };
        Ok(Policy {
            default: Need::parse(&settings.default_scope, "policy.default_scope")?,
            tools: compile(tools, "policy.tools", Kind::Tool)?,
            prompts: compile(&settings.prompts, "policy.prompts", Kind::Prompt)?,
            resources: compile(&settings.resources, "policy.resources", Kind::Resource)?,
        })
    }

    fn empty() -> Policy {
        Policy {
            default: Need {
                scopes: vec![BASE_SCOPE.into()],
                set: ScopeSet::from_iter([BASE_SCOPE]),
            },
            tools: Vec::new(),
            prompts: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// The built-in tools' policy (default settings, no upstream).
    pub fn builtin() -> &'static Policy {
        &BUILTIN
    }

    fn rules(&self, kind: Kind) -> &[Rule] {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
        }
    }

    fn need<'a>(
        &self,
        kind: Kind,
        name: &str,
        argument: &impl Fn(&str) -> Option<&'a str>,
    ) -> &Need {
        self.rules(kind)
            .iter()
            .find(|r| r.applies(name, argument))
            .map(|r| &r.need)
            .unwrap_or(&self.default)
    }

    /// Decides a use of `name` (a tool, prompt or resource URI) by a caller holding
    /// `granted` (`None` = anonymous); `argument` reads the call's string arguments.
    /// Allocates only for refusals.
    pub fn decide_with<'a>(
        &self,
        kind: Kind,
        name: &str,
        argument: impl Fn(&str) -> Option<&'a str>,
        granted: Option<&ScopeSet>,
    ) -> Decision {
        let need = self.need(kind, name, &argument);
        if need.granted_to(granted) {
            return Decision::Allow;
        }
        let needed = need.set.clone();
        match granted {
            None => Decision::Unauthenticated { scope: needed },
            Some(granted) => Decision::InsufficientScope {
                scope: needed.union(granted),
                needed,
            },
        }
    }

    /// Decides a `tools/call` of `tool` with `arguments`.
    pub fn decide_tool(
        &self,
        tool: &str,
        arguments: Option<&Map<String, Value>>,
        granted: Option<&ScopeSet>,
    ) -> Decision {
        self.decide_with(
            Kind::Tool,
            tool,
            |key| arguments.and_then(|a| a.get(key)).and_then(Value::as_str),
            granted,
        )
    }

    /// Whether a list shows `name` to a caller holding `granted`: rules with argument
    /// conditions are skipped (the listing is about the tool as a whole).
    pub fn may_list(&self, kind: Kind, name: &str, granted: Option<&ScopeSet>) -> bool {
        self.rules(kind)
            .iter()
            .find(|r| r.when.is_empty() && r.pattern.matches(name))
            .map(|r| &r.need)
            .unwrap_or(&self.default)
            .granted_to(granted)
    }
}

/// The only argument the built-in tools' policy looks at: `category` (when it is a
/// string).
pub fn category_argument(arguments: Option<&Map<String, Value>>) -> Option<&str> {
    arguments
        .and_then(|a| a.get("category"))
        .and_then(Value::as_str)
}

/// Decides a call of built-in `tool` by a caller holding `granted` (`None` =
/// anonymous), with the built-in policy.
pub fn decide(
    tool: &str,
    arguments: Option<&Map<String, Value>>,
    granted: Option<&ScopeSet>,
) -> Decision {
    Policy::builtin().decide_tool(tool, arguments, granted)
}

/// [`decide`] with the `category` argument already extracted.
pub fn decide_call(tool: &str, category: Option<&str>, granted: Option<&ScopeSet>) -> Decision {
    Policy::builtin().decide_with(
        Kind::Tool,
        tool,
        |key| if key == "category" { category } else { None },
        granted,
    )
}

/// Whether `tools/list` shows built-in `tool` to a caller holding `granted`.
pub fn may_list(tool: &str, granted: Option<&ScopeSet>) -> bool {
    Policy::builtin().may_list(Kind::Tool, tool, granted)
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
        assert_eq!(
            decide_call(PROTECTED_DATA, Some(" ADMIN "), Some(&scopes("mcp:read"))),
            Decision::InsufficientScope {
                needed: scopes("mcp:read mcp:admin"),
                scope: scopes("mcp:read mcp:admin"),
            }
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

    #[test]
    fn globs_match_whole_names() {
        let g = |p: &str, n: &str| glob_match(&p.chars().collect::<Vec<_>>(), n);
        assert!(g("delete_*", "delete_user"));
        assert!(g("delete_*", "delete_"));
        assert!(!g("delete_*", "undelete_user"));
        assert!(g("*_admin", "user_admin"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("*", ""));
        assert!(g("file:///secret/*", "file:///secret/a/b.txt"));
        assert!(!g("file:///secret/*", "file:///public/a"));
        assert!(g("*a*b*", "xxaxxbxx"));
        assert!(!g("*a*b*", "xxbxxaxx"));
        assert!(g("é*", "éclair"));
        // No exponential backtracking on adversarial names.
        assert!(!g("*a*a*a*a*a*a*a*b", &"a".repeat(5000)));
    }

    #[test]
    fn configured_rules_first_match_then_the_default_scope() {
        let settings = PolicySettings {
            default_scope: "mcp:read".into(),
            tools: Some(vec![
                rule("delete_*", "mcp:admin"),
                rule("echo", ""),
                rule("delete_cache", ""),
            ]),
            prompts: vec![rule("secret_*", "mcp:admin")],
            resources: vec![rule("demo://resource/static/document/*", "mcp:admin")],
        };
        let policy = Policy::from_settings(&settings, true).unwrap();
        let read = scopes("mcp:read");
        let admin = scopes("mcp:admin");
        assert_eq!(
            policy.decide_tool("delete_user", None, Some(&read)),
            Decision::InsufficientScope {
                needed: admin.clone(),
                scope: scopes("mcp:admin mcp:read"),
            }
        );
        // The first matching rule decides.
        assert!(matches!(
            policy.decide_tool("delete_cache", None, Some(&read)),
            Decision::InsufficientScope { .. }
        ));
        assert_eq!(policy.decide_tool("echo", None, None), Decision::Allow);
        assert_eq!(
            policy.decide_tool("add", None, Some(&scopes("openid"))),
            Decision::InsufficientScope {
                needed: read.clone(),
                scope: scopes("mcp:read openid"),
            }
        );
        assert_eq!(
            policy.decide_tool("add", None, None),
            Decision::Unauthenticated {
                scope: read.clone()
            }
        );
        assert!(policy.may_list(Kind::Tool, "add", Some(&read)));
        assert!(!policy.may_list(Kind::Tool, "delete_user", Some(&read)));
        assert!(policy.may_list(Kind::Tool, "delete_user", Some(&admin)));
        assert!(!policy.may_list(Kind::Prompt, "secret_plan", Some(&read)));
        assert!(policy.may_list(Kind::Prompt, "simple_prompt", Some(&read)));
        assert!(!policy.may_list(
            Kind::Resource,
            "demo://resource/static/document/a.md",
            Some(&read)
        ));
        // In gateway mode an absent tool list has no rules: the default scope decides.
        let plain = Policy::from_settings(&PolicySettings::default(), true).unwrap();
        assert!(!plain.may_list(Kind::Tool, HELLO_WORLD, None));
        assert!(plain.may_list(Kind::Tool, ADMIN_PANEL, Some(&read)));
    }

    #[test]
    fn bad_rules_are_explained() {
        let mut settings = PolicySettings {
            tools: Some(vec![rule("x", "mcp:read \"bad\"")]),
            ..Default::default()
        };
        let err = Policy::from_settings(&settings, true).unwrap_err();
        assert!(err.contains("policy.tools[0].scope"), "{err}");
        settings.tools = Some(vec![rule(" ", "")]);
        let err = Policy::from_settings(&settings, true).unwrap_err();
        assert!(err.contains("policy.tools[0].name"), "{err}");
        settings.tools = None;
        settings.prompts = vec![RuleSettings {
            arguments: vec![ArgumentCondition {
                name: "a".into(),
                value: "b".into(),
            }],
            ..rule("p", "")
        }];
        let err = Policy::from_settings(&settings, true).unwrap_err();
        assert!(err.contains("policy.prompts[0].arguments"), "{err}");
    }
}
