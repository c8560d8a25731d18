//! Typed configuration of the MCP server: compiled-in defaults, then a TOML file, then
//! `MCP__SECTION__KEY` environment variables (see [`shared::settings::load`]), then
//! command-line flags. [`Settings::validate`] runs at startup and explains what is wrong.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::auth::settings::AuthSettings;

/// Env prefix: `MCP__SERVER__LISTEN`, `MCP__AUTH__ISSUER`, ...
pub const ENV_PREFIX: &str = "MCP";

/// Dotted keys whose environment value is a comma-separated list.
pub const LIST_KEYS: &[&str] = &[
    "security.allowed_hosts",
    "security.allowed_origins",
    "auth.audiences",
    "auth.algorithms",
];

/// The confidential client that `auth-server --demo` pre-registers for this server.
pub const DEMO_CLIENT_ID: &str = "mcp-server";
pub const DEMO_CLIENT_SECRET: &str = "demo-mcp-server-secret";

/// The default location of the demo records served by the `protected_data` tool.
pub const DEFAULT_PROTECTED_DATA_FILE: &str = "config/protected-data.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub auth: AuthSettings,
    pub security: SecuritySettings,
    pub transport: TransportSettings,
    pub admin_api: AdminApiSettings,
    pub data: DataSettings,
    /// Gateway mode: the MCP server this one fronts (none: the built-in tools).
    pub upstream: crate::gateway::settings::UpstreamSettings,
    /// Which scope each tool, prompt and resource needs.
    pub policy: crate::policy::PolicySettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Socket address to bind (`127.0.0.1:3000`; port 0 picks a free port).
    pub listen: String,
    /// Where `GET /metrics` is served, apart from the public port: a socket address
    /// (port 0 picks a free one), or `""` / `"off"` for no metrics. Keep it on loopback
    /// or a private network: metrics reveal traffic, callers' tools and auth failures.
    pub metrics_listen: String,
    /// The canonical URL of the MCP endpoint: the PRM `resource`, the audience tokens
    /// must carry, and (its path) where `/mcp` is served. A port of 0 is replaced by
    /// the bound port (handy for tests).
    pub resource: String,
    /// Human-readable name shown in the PRM document (`resource_name`).
    pub resource_name: String,
    /// Largest accepted request body on the MCP endpoint, in bytes.
    pub max_body_bytes: usize,
    /// actix worker threads; 0 = one per CPU.
    pub workers: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3000".into(),
            metrics_listen: "127.0.0.1:9465".into(),
            resource: "http://localhost:3000/mcp".into(),
            resource_name: "MCP OAuth demo server".into(),
            max_body_bytes: 1024 * 1024,
            workers: 0,
        }
    }
}

/// DNS-rebinding protection. `None` (key absent) means "the host of the resource URL plus
/// loopback"; an explicitly empty list is refused at startup because it would disable the
/// check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// Accepted `Host` values: `host` (any port) or `host:port`.
    pub allowed_hosts: Option<Vec<String>>,
    /// Accepted browser `Origin`s: `scheme://host[:port]`, `:*` for any port, or `null`.
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// No legacy sessions: every request is served on its own (scale-out friendly;
    /// legacy clients then cannot receive server-to-client requests).
    pub stateless: bool,
    /// In stateless mode, answer simple requests with `application/json` instead of SSE.
    pub json_response: bool,
    /// Idle time after which a legacy session is closed, in seconds (a lower bound:
    /// closed within 1.25× that plus a second).
    pub session_idle_secs: u64,
    /// Legacy sessions one subject may hold; opening more closes its oldest.
    pub max_sessions_per_subject: usize,
    /// Unclaimed anonymous legacy sessions (anonymous mode) kept at once; opening more
    /// closes the oldest.
    pub max_anonymous_sessions: usize,
    /// SSE keep-alive comment interval in seconds (0 = none).
    pub sse_keep_alive_secs: u64,
    /// `retry:` hint of the SSE priming events (SEP-1699), in milliseconds; 0 sends no
    /// priming events (for old clients that choke on an empty `data:` line).
    pub sse_retry_ms: u64,
    /// Answer plain `tools/call`s of the self-contained tools in the bridge instead of
    /// through rmcp's session worker (same status, content type and JSON-RPC message,
    /// several times cheaper;
    /// see docs/benchmarks.md). `false` sends every request through rmcp.
    pub direct_tool_calls: bool,
    /// This replica's name in the legacy session ids it creates (`<route>.<uuid>`), so
    /// that a load balancer can send every request of a session to the replica that
    /// holds it (deploy/nginx/mcp.conf). Empty: plain UUIDs (one replica, or stateless).
    pub session_route: String,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            stateless: false,
            json_response: false,
            session_idle_secs: 300,
            max_sessions_per_subject: 32,
            max_anonymous_sessions: crate::sessions::DEFAULT_MAX_ANONYMOUS_SESSIONS,
            sse_keep_alive_secs: 15,
            sse_retry_ms: 3000,
            direct_tool_calls: true,
            session_route: String::new(),
        }
    }
}

/// The auth-server's admin API, used by the `admin_panel` tool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminApiSettings {
    /// `None` = auto: on when the AS answers `GET <base_url>/admin/grants` with a
    /// Bearer challenge (our auth-server does, external IdPs answer 404).
    pub enabled: Option<bool>,
    /// Where the admin API lives; default: the issuer.
    pub base_url: Option<String>,
    /// Token endpoint for the client_credentials grant; default: from AS metadata.
    pub token_endpoint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSettings {
    /// JSON file with the demo records of the `protected_data` tool.
    pub protected_data_file: String,
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            protected_data_file: DEFAULT_PROTECTED_DATA_FILE.into(),
        }
    }
}

impl Settings {
    /// Defaults, then `file`, then `MCP__...` env variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        shared::settings::load(file, ENV_PREFIX, LIST_KEYS).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Demo wiring (`--demo`): this server's own credentials become the demo client
    /// `auth-server --demo` registers (`mcp-server` / `secret`), unless configured.
    pub fn apply_demo_defaults(&mut self, secret: &shared::Secret) {
        if self.auth.client_id.trim().is_empty() {
            self.auth.client_id = DEMO_CLIENT_ID.into();
        }
        if self.auth.client_secret.is_empty() {
            self.auth.client_secret = secret.clone();
        }
    }

    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), String> {
        if self.server.listen.trim().is_empty() {
            return Err("server.listen is empty; use e.g. \"127.0.0.1:3000\"".into());
        }
        let resource = shared::resource::canonical_url(&self.server.resource).map_err(|e| {
            format!(
                "server.resource: {e}; use the full MCP URL, e.g. \"https://mcp.example.com/mcp\""
            )
        })?;
        if let Ok(parsed) = url::Url::parse(&resource) {
            if parsed.query().is_some() {
                return Err(format!(
                    "server.resource {resource:?} must not contain a query string"
                ));
            }
        }
        if self.server.max_body_bytes < 1024 {
            return Err(format!(
                "server.max_body_bytes is {}; it must be at least 1024",
                self.server.max_body_bytes
            ));
        }
        if self.auth.issuer.trim().is_empty() {
            return Err("auth.issuer is empty; set it to the authorization server's issuer URL (--issuer or MCP__AUTH__ISSUER)".into());
        }
        self.auth.validate()?;
        if let Some(hosts) = &self.security.allowed_hosts {
            let hosts = clean_list(hosts);
            if hosts.is_empty() {
                return Err("security.allowed_hosts is an empty list, which would disable Host validation (DNS-rebinding protection). Remove the key to use the defaults (the resource URL's host and loopback) or list the host names".into());
            }
            for host in &hosts {
                if !crate::security::is_valid_host_entry(host) {
                    return Err(format!(
                        "security.allowed_hosts: {host:?} is not a host name; use \"mcp.example.com\" (any port) or \"mcp.example.com:8443\", without scheme or path"
                    ));
                }
            }
        }
        if let Some(origins) = &self.security.allowed_origins {
            let origins = clean_list(origins);
            if origins.is_empty() {
                return Err("security.allowed_origins is an empty list. Remove the key to use the defaults (the resource URL's origin and loopback) or list the allowed origins, e.g. \"https://app.example.com\"".into());
            }
            for origin in &origins {
                if !crate::security::is_valid_origin_pattern(origin) {
                    return Err(format!(
                        "security.allowed_origins: {origin:?} is not an origin; use \"scheme://host[:port]\", \"scheme://host:*\" or \"null\""
                    ));
                }
            }
        }
        if let Some(base) = &self.admin_api.base_url {
            shared::resource::canonical_url(base)
                .map_err(|e| format!("admin_api.base_url: {e}"))?;
        }
        if let Some(endpoint) = &self.admin_api.token_endpoint {
            url::Url::parse(endpoint).map_err(|e| format!("admin_api.token_endpoint: {e}"))?;
        }
        if self.transport.max_sessions_per_subject == 0 {
            return Err("transport.max_sessions_per_subject must be at least 1".into());
        }
        if self.transport.max_anonymous_sessions == 0 {
            return Err("transport.max_anonymous_sessions must be at least 1".into());
        }
        let route = self.transport.session_route.trim();
        if !route.is_empty() && !crate::session_manager::is_valid_route(route) {
            return Err(format!(
                "transport.session_route {route:?} must be 1 to {} ASCII letters, digits, '-' or '_' (it leads every session id, e.g. \"mcp-1\"; deploy/nginx/mcp.conf routes on it)",
                crate::session_manager::MAX_ROUTE_LEN
            ));
        }
        if self.data.protected_data_file.trim().is_empty() {
            return Err("data.protected_data_file is empty".into());
        }
        self.upstream.validate()?;
        if self.upstream.is_configured() && self.transport.stateless {
            return Err("transport.stateless = true cannot be combined with an [upstream]: the gateway holds one upstream connection per MCP session; remove one of them".into());
        }
        crate::policy::Policy::from_settings(&self.policy, self.upstream.is_configured())?;
        Ok(())
    }

    /// The Host allow-list in force: configured, or the resource URL's host plus loopback.
    pub fn effective_allowed_hosts(&self, resource: &str) -> Vec<String> {
        match &self.security.allowed_hosts {
            Some(list) => clean_list(list),
            None => crate::security::default_allowed_hosts(resource),
        }
    }

    /// The Origin allow-list in force: configured, or the resource URL's origin plus loopback.
    pub fn effective_allowed_origins(&self, resource: &str) -> Vec<String> {
        match &self.security.allowed_origins {
            Some(list) => clean_list(list),
            None => crate::security::default_allowed_origins(resource),
        }
    }
}

fn clean_list(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn explicitly_empty_host_list_is_refused() {
        let mut s = Settings::default();
        s.security.allowed_hosts = Some(vec![]);
        assert!(s.validate().unwrap_err().contains("allowed_hosts"));
        s.security.allowed_hosts = Some(vec![" ".into()]);
        assert!(s.validate().is_err());
        // A URL where a host name belongs would never match any request.
        s.security.allowed_hosts = Some(vec!["https://mcp.example.com".into()]);
        let err = s.validate().unwrap_err();
        assert!(err.contains("not a host name"), "{err}");
        s.security.allowed_hosts = Some(vec!["mcp.example.com/mcp".into()]);
        assert!(s.validate().is_err());
        s.security.allowed_hosts = Some(vec![
            "mcp.example.com".into(),
            "mcp.example.com:8443".into(),
            "::1".into(),
            "[::1]:3000".into(),
            "127.0.0.1".into(),
        ]);
        s.validate().unwrap();
        s.security.allowed_hosts = None;
        s.security.allowed_origins = Some(vec![]);
        assert!(s.validate().unwrap_err().contains("allowed_origins"));
        s.security.allowed_origins = Some(vec!["not an origin".into()]);
        assert!(s.validate().unwrap_err().contains("not an origin"));
    }

    #[test]
    fn bad_resource_is_explained() {
        let mut s = Settings::default();
        s.server.resource = "/mcp".into();
        assert!(s.validate().unwrap_err().contains("server.resource"));
        s.server.resource = "http://x/mcp?a=b".into();
        assert!(s.validate().unwrap_err().contains("query"));
    }

    #[test]
    fn a_session_route_must_fit_in_a_session_id() {
        let mut s = Settings::default();
        s.transport.session_route = "mcp-1".into();
        s.validate().unwrap();
        for bad in ["mcp.1", "mcp 1", "ünï", &"r".repeat(33)] {
            s.transport.session_route = bad.into();
            let err = s.validate().unwrap_err();
            assert!(err.contains("transport.session_route"), "{bad}: {err}");
        }
        s.transport.session_route = "  ".into();
        s.validate().unwrap();
    }

    #[test]
    fn default_lists_come_from_the_resource() {
        let s = Settings::default();
        let hosts = s.effective_allowed_hosts("https://mcp.example.com/mcp");
        assert!(hosts.contains(&"mcp.example.com".to_string()));
        assert!(hosts.contains(&"127.0.0.1".to_string()));
        let origins = s.effective_allowed_origins("https://mcp.example.com/mcp");
        assert!(origins.contains(&"https://mcp.example.com".to_string()));
    }

    #[test]
    fn toml_file_is_read_and_typos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcp.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"0.0.0.0:8080\"\nresource = \"https://mcp.example.com/mcp\"\n\n[security]\nallowed_hosts = [\"mcp.example.com\"]\n\n[auth]\nissuer = \"https://as.example.com\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.server.listen, "0.0.0.0:8080");
        assert_eq!(
            s.security.allowed_hosts,
            Some(vec!["mcp.example.com".to_string()])
        );
        assert_eq!(s.auth.issuer, "https://as.example.com");
        s.validate().unwrap();

        std::fs::write(&path, "[server]\nlisen = \"0.0.0.0:8080\"\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");

        std::fs::write(&path, "[security]\nallowed_hosts = []\n").unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert!(s.validate().unwrap_err().contains("security.allowed_hosts"));
    }

    #[test]
    fn every_shipped_mcp_server_config_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut files = vec![root.join("mcp-server.toml"), root.join("gateway.toml")];
        if let Ok(dir) = std::fs::read_dir(root.join("external-as")) {
            files.extend(dir.flatten().map(|e| e.path()));
        }
        for file in files
            .iter()
            .filter(|f| f.exists() && f.extension().is_some_and(|e| e == "toml"))
        {
            let s =
                Settings::load(Some(file)).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // Presets with placeholders (`<tenant>`) only need to parse.
            if !std::fs::read_to_string(file).unwrap().contains('<') {
                s.validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            }
        }
    }

    #[test]
    fn demo_defaults_do_not_override_configured_credentials() {
        let mut s = Settings::default();
        s.apply_demo_defaults(&shared::Secret::new("x"));
        assert_eq!(s.auth.client_id, DEMO_CLIENT_ID);
        assert_eq!(s.auth.client_secret.expose(), "x");
        s.auth.client_id = "rs".into();
        s.apply_demo_defaults(&shared::Secret::new("y"));
        assert_eq!(s.auth.client_id, "rs");
        assert_eq!(s.auth.client_secret.expose(), "x");
    }

    #[test]
    fn the_shipped_policy_is_the_built_in_one() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let s = Settings::load(Some(&root.join("mcp-server.toml"))).unwrap();
        assert_eq!(
            s.policy.tools.as_deref(),
            Some(crate::policy::builtin_tool_rules().as_slice())
        );
        assert_eq!(
            s.policy,
            crate::policy::PolicySettings {
                tools: Some(crate::policy::builtin_tool_rules()),
                ..Default::default()
            }
        );
        assert!(!s.upstream.is_configured());
        assert_eq!(
            s.upstream,
            crate::gateway::settings::UpstreamSettings::default()
        );
    }

    #[test]
    fn upstream_and_policy_from_toml_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(
            &path,
            r#"
[upstream]
command = "my-server --flag 'two words'"
env = { API_MODE = "x" }
headers = { "X-Api-Key" = "from-file" }

[policy]
default_scope = ""
[[policy.tools]]
name = "delete_*"
scope = "mcp:admin"
[[policy.resources]]
uri = "file:///private/*"
scope = "mcp:admin"
"#,
        )
        .unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        s.validate().unwrap();
        assert_eq!(
            s.upstream.target().unwrap(),
            Some(crate::gateway::Target::Command(vec![
                "my-server".into(),
                "--flag".into(),
                "two words".into()
            ]))
        );
        // Environment variable names keep their case.
        assert_eq!(
            s.upstream.env.get("API_MODE").map(String::as_str),
            Some("x")
        );
        assert_eq!(s.policy.default_scope, "");
        assert_eq!(s.policy.resources[0].name, "file:///private/*");

        std::env::set_var("MCPTESTUP__UPSTREAM__URL", "http://10.0.0.5:8080/mcp");
        let s: Settings = shared::settings::load(None, "MCPTESTUP", LIST_KEYS).unwrap();
        std::env::remove_var("MCPTESTUP__UPSTREAM__URL");
        assert_eq!(s.upstream.url.as_deref(), Some("http://10.0.0.5:8080/mcp"));
        s.validate().unwrap();

        std::fs::write(
            &path,
            "[upstream]
url = \"http://x/mcp\"
[transport]
stateless = true
",
        )
        .unwrap();
        let err = Settings::load(Some(&path)).unwrap().validate().unwrap_err();
        assert!(err.contains("transport.stateless"), "{err}");
        std::fs::write(
            &path,
            "[[policy.tools]]
name = \"x\"
scope = \"a b\\\\c\"
",
        )
        .unwrap();
        let err = Settings::load(Some(&path)).unwrap().validate().unwrap_err();
        assert!(err.contains("policy.tools[0].scope"), "{err}");
        std::fs::write(
            &path,
            "[policy]
default_scop = \"x\"
",
        )
        .unwrap();
        assert!(Settings::load(Some(&path))
            .unwrap_err()
            .to_string()
            .contains("default_scop"));
    }

    #[test]
    fn env_overrides_lists() {
        // Uses a unique variable prefix so that parallel tests cannot interfere.
        std::env::set_var(
            "MCPTESTLIST__SECURITY__ALLOWED_HOSTS",
            "a.example,b.example",
        );
        let s: Settings = shared::settings::load(None, "MCPTESTLIST", LIST_KEYS).unwrap();
        std::env::remove_var("MCPTESTLIST__SECURITY__ALLOWED_HOSTS");
        assert_eq!(
            s.security.allowed_hosts,
            Some(vec!["a.example".to_string(), "b.example".to_string()])
        );
        assert!(s.security.allowed_origins.is_none());
    }
}
