//! `[upstream]`: the MCP server the gateway fronts, either a Streamable HTTP URL or a
//! stdio command started once per MCP session.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A command line: one string (split on whitespace, with `'…'` / `"…"` quoting and
/// no other shell syntax: the command is started directly, never through a shell) or
/// an argv array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    Argv(Vec<String>),
    Line(String),
}

impl CommandLine {
    /// The program and its arguments.
    pub fn argv(&self) -> Result<Vec<String>, String> {
        let argv = match self {
            CommandLine::Argv(argv) => argv.clone(),
            CommandLine::Line(line) => split_command_line(line)?,
        };
        match argv.first() {
            Some(program) if !program.trim().is_empty() => Ok(argv),
            _ => Err("upstream.command is empty".into()),
        }
    }
}

/// Splits `line` into words as a POSIX shell would (quotes, backslash escapes, `#`
/// comments) without expanding anything: `$HOME`, `;` or `*` stay literal, and no
/// shell ever runs the command.
pub fn split_command_line(line: &str) -> Result<Vec<String>, String> {
    shlex::split(line)
        .ok_or_else(|| "upstream.command: unterminated quote or trailing backslash".to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// A Streamable HTTP MCP server (`--upstream-url`, `MCP__UPSTREAM__URL`).
    pub url: Option<String>,
    /// A stdio MCP server, started once per MCP session (`--upstream-cmd`).
    pub command: Option<CommandLine>,
    /// Extra environment of the command (added to this server's own).
    pub env: BTreeMap<String, String>,
    /// Working directory of the command (default: this server's).
    pub cwd: Option<String>,
    /// Static headers sent to an HTTP upstream: the gateway's own credentials there
    /// (never the client's). `MCP__UPSTREAM__HEADERS__X_API_KEY` overrides
    /// `X-Api-Key` (`_` in a name stands for `-`).
    pub headers: BTreeMap<String, String>,
    /// Send `X-MCP-Subject`, `X-MCP-Username`, `X-MCP-Scopes` and `X-MCP-Client-Id` to an
    /// HTTP upstream (the command gets them as `MCP_SUBJECT`, ... environment
    /// variables). Only for upstreams on a private network: anyone who can reach the
    /// upstream directly can send these headers too.
    pub forward_identity: bool,
    /// How long one request to the upstream may take (initialization included; reset
    /// by each progress notification of the request), in seconds.
    pub timeout_secs: u64,
    /// Upstream connections (stdio children, HTTP sessions) open at once, all subjects
    /// together; `initialize` beyond it is refused.
    pub max_sessions: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            url: None,
            command: None,
            env: BTreeMap::new(),
            cwd: None,
            headers: BTreeMap::new(),
            forward_identity: false,
            timeout_secs: 60,
            max_sessions: 256,
        }
    }
}

/// Where the upstream is, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Http(url::Url),
    Command(Vec<String>),
}

/// Header names the gateway sets itself or must never forward. `Authorization` is not
/// among them: a static one is the gateway's own credential at the upstream (an API
/// key, a token issued to the gateway), which is what the MCP security rules ask for
/// instead of passthrough; the client's `Authorization` is never copied upstream,
/// whatever is configured here, since upstream requests are built from scratch.
const RESERVED_HEADERS: &[&str] = &[
    "cookie",
    "host",
    "content-length",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "x-mcp-subject",
    "x-mcp-username",
    "x-mcp-scopes",
    "x-mcp-client-id",
];

impl UpstreamSettings {
    pub fn is_configured(&self) -> bool {
        self.url.as_deref().is_some_and(|u| !u.trim().is_empty()) || self.command.is_some()
    }

    /// The upstream, or `None` without one.
    pub fn target(&self) -> Result<Option<Target>, String> {
        let url = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        match (url, &self.command) {
            (Some(_), Some(_)) => Err(
                "upstream.url and upstream.command are both set; an upstream is either a URL or a command".into(),
            ),
            (Some(url), None) => {
                let parsed = url::Url::parse(url).map_err(|e| {
                    format!("upstream.url {url:?}: {e}; use the MCP endpoint, e.g. \"http://127.0.0.1:3001/mcp\"")
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(format!(
                        "upstream.url {url:?} must be an http:// or https:// URL"
                    ));
                }
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    return Err("upstream.url must not carry credentials; use [upstream] headers".into());
                }
                Ok(Some(Target::Http(parsed)))
            }
            (None, Some(command)) => Ok(Some(Target::Command(command.argv()?))),
            (None, None) => Ok(None),
        }
    }

    /// The static headers, names normalized (`_` → `-`, lowercase) and checked.
    pub fn header_pairs(&self) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String> {
        let mut pairs = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let normalized = name.trim().replace('_', "-").to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&normalized.as_str()) {
                return Err(format!(
                    "upstream.headers: {name:?} is set by the gateway itself and cannot be configured"
                ));
            }
            let header = http::HeaderName::from_bytes(normalized.as_bytes())
                .map_err(|_| format!("upstream.headers: {name:?} is not a header name"))?;
            let value = http::HeaderValue::from_str(value.trim()).map_err(|_| {
                format!("upstream.headers.{name}: the value is not a valid header value")
            })?;
            pairs.push((header, value));
        }
        Ok(pairs)
    }

    pub fn validate(&self) -> Result<(), String> {
        let target = self.target()?;
        if target.is_none() {
            return Ok(());
        }
        if self.timeout_secs == 0 {
            return Err("upstream.timeout_secs must be at least 1".into());
        }
        if self.max_sessions == 0 {
            return Err("upstream.max_sessions must be at least 1".into());
        }
        self.header_pairs()?;
        for name in self.env.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(format!("upstream.env: {name:?} is not a variable name"));
            }
        }
        if let Some(cwd) = &self.cwd {
            if !std::path::Path::new(cwd).is_dir() {
                return Err(format!("upstream.cwd {cwd:?} is not a directory"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_without_a_shell() {
        assert_eq!(
            split_command_line("npx -y @modelcontextprotocol/server-everything").unwrap(),
            ["npx", "-y", "@modelcontextprotocol/server-everything"]
        );
        assert_eq!(
            split_command_line(r#"  python3 "my server.py" --name 'a b' x\ y $HOME;rm  "#).unwrap(),
            [
                "python3",
                "my server.py",
                "--name",
                "a b",
                "x y",
                "$HOME;rm"
            ]
        );
        assert_eq!(split_command_line(r#""" ''"#).unwrap(), ["", ""]);
        assert!(split_command_line("a 'b").is_err());
        assert!(split_command_line("a \"b").is_err());
        assert!(CommandLine::Line("   ".into()).argv().is_err());
        assert!(CommandLine::Argv(vec![]).argv().is_err());
    }

    #[test]
    fn an_upstream_is_a_url_or_a_command() {
        let mut s = UpstreamSettings::default();
        assert_eq!(s.target().unwrap(), None);
        s.validate().unwrap();
        s.url = Some("http://127.0.0.1:9/mcp".into());
        assert!(matches!(s.target().unwrap(), Some(Target::Http(_))));
        s.command = Some(CommandLine::Line("server".into()));
        assert!(s.validate().unwrap_err().contains("both"));
        s.url = None;
        assert_eq!(
            s.target().unwrap(),
            Some(Target::Command(vec!["server".into()]))
        );
        s.command = None;
        for bad in ["ftp://x/mcp", "not a url", "http://user:pw@x/mcp"] {
            s.url = Some(bad.into());
            assert!(s.validate().unwrap_err().contains("upstream.url"), "{bad}");
        }
        s.url = Some("https://mcp.internal/mcp".into());
        s.headers.insert("X_Api_Key".into(), "k".into());
        assert_eq!(s.header_pairs().unwrap()[0].0.as_str(), "x-api-key");
        s.headers.clear();
        s.headers
            .insert("Authorization".into(), "Bearer gateway-own-token".into());
        assert_eq!(s.header_pairs().unwrap()[0].0.as_str(), "authorization");
        s.headers.insert("Cookie".into(), "session=x".into());
        assert!(s.validate().unwrap_err().contains("Cookie"));
        s.headers.clear();
        s.timeout_secs = 0;
        assert!(s.validate().unwrap_err().contains("upstream.timeout_secs"));
    }
}
