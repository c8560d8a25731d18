//! Scope names and scope math. This is the only place that knows that `mcp:admin`
//! implies `mcp:read`; both servers ask it instead of comparing strings.

use std::collections::BTreeSet;
use std::fmt;

pub const MCP_READ: &str = "mcp:read";
pub const MCP_ADMIN: &str = "mcp:admin";
pub const AUTH_ADMIN: &str = "auth:admin";
pub const AUTH_INTROSPECT: &str = "auth:introspect";
pub const OPENID: &str = "openid";
pub const PROFILE: &str = "profile";
pub const EMAIL: &str = "email";
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Scopes implied by holding `scope` (not including itself).
fn implied_by(scope: &str) -> &'static [&'static str] {
    match scope {
        MCP_ADMIN => &[MCP_READ],
        _ => &[],
    }
}

/// An RFC 6749 §3.3 scope: a set of space-delimited tokens. Ordered so that the
/// string form is stable (it is stored, compared and shown to users).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<String>);

/// A scope token holds printable ASCII except space, `"` and `\` (RFC 6749 §3.3).
pub fn is_valid_scope_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid scope token {0:?}")]
pub struct InvalidScope(pub String);

impl ScopeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a space-delimited scope string. An empty or blank string is the empty set.
    pub fn parse(raw: &str) -> Result<Self, InvalidScope> {
        let mut set = BTreeSet::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if !is_valid_scope_token(token) {
                return Err(InvalidScope(token.to_string()));
            }
            set.insert(token.to_string());
        }
        Ok(Self(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn insert(&mut self, scope: impl Into<String>) {
        self.0.insert(scope.into());
    }

    /// Literal membership, without hierarchy.
    pub fn contains_literal(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether this grant satisfies `scope`, counting implied scopes
    /// (a broader scope satisfies a narrower one).
    pub fn grants(&self, scope: &str) -> bool {
        self.0.contains(scope) || self.0.iter().any(|held| implied_by(held).contains(&scope))
    }

    /// Whether every scope in `required` is granted (with hierarchy).
    pub fn grants_all(&self, required: &ScopeSet) -> bool {
        required.iter().all(|s| self.grants(s))
    }

    /// Literal subset test, used for "a refresh may narrow but never widen".
    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.union(&other.0).cloned().collect())
    }

    /// Keeps only scopes for which `allowed` returns true.
    pub fn retain(&mut self, mut allowed: impl FnMut(&str) -> bool) {
        self.0.retain(|s| allowed(s));
    }
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(items: I) -> Self {
        Self(items.into_iter().map(Into::into).collect())
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeSet({self})")
    }
}

impl serde::Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ScopeSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ScopeSet::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_sorted_without_duplicates() {
        let s = ScopeSet::parse("  mcp:read openid mcp:read ").unwrap();
        assert_eq!(s.to_string(), "mcp:read openid");
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_tokens() {
        assert!(ScopeSet::parse("a\"b").is_err());
        assert!(ScopeSet::parse("a\\b").is_err());
        assert!(ScopeSet::parse("caf\u{e9}").is_err());
    }

    #[test]
    fn admin_implies_read_but_not_the_reverse() {
        let admin = ScopeSet::parse("mcp:admin").unwrap();
        let read = ScopeSet::parse("mcp:read").unwrap();
        assert!(admin.grants(MCP_READ));
        assert!(admin.grants_all(&ScopeSet::parse("mcp:read mcp:admin").unwrap()));
        assert!(!read.grants(MCP_ADMIN));
        assert!(!read.is_subset_of(&admin));
    }
}
