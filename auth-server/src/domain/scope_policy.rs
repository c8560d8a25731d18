//! Which scopes exist, which a role may hold, and how requested scopes are resolved:
//! unknown scopes are an `invalid_scope` error, scopes the user's role (or the
//! client's registration) does not allow are silently dropped, and a refresh may
//! narrow but never widen.

use shared::scopes::{self, ScopeSet};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is malformed: {0}")]
    Malformed(String),
    #[error("unknown scope {0:?}")]
    Unknown(String),
    #[error("the requested scope exceeds the scope originally granted")]
    Widening,
    #[error("the client may not request scope {0:?}")]
    NotAllowedForClient(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role of a stored user: an unrecognised value gets the least privilege.
    pub fn from_stored(raw: &str) -> Role {
        Role::parse(raw).unwrap_or(Role::User)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// The `roles` claim.
    pub fn claim(self) -> Vec<String> {
        match self {
            Role::User => vec!["user".into()],
            Role::Admin => vec!["user".into(), "admin".into()],
        }
    }

    /// Every scope this role may hold.
    pub fn allowed_scopes(self) -> ScopeSet {
        let mut set = ScopeSet::from_iter([
            scopes::MCP_READ,
            scopes::OPENID,
            scopes::PROFILE,
            scopes::EMAIL,
            scopes::OFFLINE_ACCESS,
        ]);
        if self == Role::Admin {
            set.insert(scopes::MCP_ADMIN);
        }
        set
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Scopes a user-facing authorization request may name.
pub fn known_user_scopes() -> ScopeSet {
    Role::Admin.allowed_scopes()
}

/// Scopes only service clients (client_credentials) may hold.
pub fn known_service_scopes() -> ScopeSet {
    ScopeSet::from_iter([
        scopes::AUTH_ADMIN,
        scopes::AUTH_INTROSPECT,
        scopes::MCP_READ,
        scopes::MCP_ADMIN,
    ])
}

/// All scopes advertised in metadata.
pub fn supported_scopes() -> Vec<String> {
    known_user_scopes()
        .union(&known_service_scopes())
        .iter()
        .map(str::to_owned)
        .collect()
}

/// Resolves the `scope` of an authorization request: parse, refuse unknown scopes,
/// fall back to the defaults when empty, then keep only what the client registered
/// (when it registered a scope).
pub fn resolve_authorization_scope(
    requested: Option<&str>,
    defaults: &[String],
    client_scope: &ScopeSet,
) -> Result<ScopeSet, ScopeError> {
    let parsed = ScopeSet::parse(requested.unwrap_or(""))
        .map_err(|e| ScopeError::Malformed(e.to_string()))?;
    let known = known_user_scopes().union(&known_service_scopes());
    if let Some(unknown) = parsed.iter().find(|s| !known.contains_literal(s)) {
        return Err(ScopeError::Unknown(unknown.to_string()));
    }
    // Service-only scopes (`auth:*`) are known but no user may hold them: dropped
    // silently, like any scope the user's role does not allow.
    let user_scopes = known_user_scopes();
    let mut parsed = parsed;
    parsed.retain(|s| user_scopes.contains_literal(s));
    let mut scope = if parsed.is_empty() && requested.is_none_or(|r| r.trim().is_empty()) {
        ScopeSet::from_iter(defaults.iter().cloned())
    } else {
        parsed
    };
    if !client_scope.is_empty() {
        scope.retain(|s| client_scope.contains_literal(s));
    }
    Ok(scope)
}

/// Cuts a scope to what the user's role allows (silently).
pub fn cut_to_role(scope: &ScopeSet, role: Role) -> ScopeSet {
    scope.intersection(&role.allowed_scopes())
}

/// The requested scopes that `cut_to_role` drops, shown to the user on the consent page.
pub fn withheld_from_role(scope: &ScopeSet, role: Role) -> ScopeSet {
    let allowed = role.allowed_scopes();
    scope
        .iter()
        .filter(|s| !allowed.contains_literal(s))
        .collect()
}

/// A refresh request may narrow the granted scope, never widen it.
pub fn narrow_on_refresh(
    requested: Option<&str>,
    granted: &ScopeSet,
) -> Result<ScopeSet, ScopeError> {
    match requested.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(granted.clone()),
        Some(raw) => {
            let parsed = ScopeSet::parse(raw).map_err(|e| ScopeError::Malformed(e.to_string()))?;
            // `mcp:admin` implies `mcp:read`, so asking for the implied scope narrows.
            if granted.grants_all(&parsed) {
                Ok(parsed)
            } else {
                Err(ScopeError::Widening)
            }
        }
    }
}

/// client_credentials: the requested scope must lie within the client's registered
/// scope; no scope means all of it.
pub fn resolve_client_credentials_scope(
    requested: Option<&str>,
    registered: &ScopeSet,
) -> Result<ScopeSet, ScopeError> {
    let parsed = ScopeSet::parse(requested.unwrap_or(""))
        .map_err(|e| ScopeError::Malformed(e.to_string()))?;
    if parsed.is_empty() {
        return Ok(registered.clone());
    }
    if let Some(extra) = parsed.iter().find(|s| !registered.contains_literal(s)) {
        return Err(ScopeError::NotAllowedForClient(extra.to_string()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn defaults_apply_when_empty_and_unknown_is_an_error() {
        let defaults = vec!["mcp:read".to_string()];
        assert_eq!(
            resolve_authorization_scope(None, &defaults, &ScopeSet::new()).unwrap(),
            set("mcp:read")
        );
        assert_eq!(
            resolve_authorization_scope(Some(""), &defaults, &ScopeSet::new()).unwrap(),
            set("mcp:read")
        );
        assert_eq!(
            resolve_authorization_scope(Some("mcp:read bogus"), &defaults, &ScopeSet::new()),
            Err(ScopeError::Unknown("bogus".into()))
        );
    }

    #[test]
    fn service_scopes_are_dropped_from_user_requests_not_refused() {
        let defaults = vec!["mcp:read".to_string()];
        assert_eq!(
            resolve_authorization_scope(
                Some("mcp:read auth:admin auth:introspect"),
                &defaults,
                &ScopeSet::new()
            )
            .unwrap(),
            set("mcp:read")
        );
        // Only service scopes: nothing is left, and the defaults do not sneak in.
        assert_eq!(
            resolve_authorization_scope(Some("auth:admin"), &defaults, &ScopeSet::new()).unwrap(),
            ScopeSet::new()
        );
    }

    #[test]
    fn refresh_may_ask_for_an_implied_scope() {
        assert_eq!(
            narrow_on_refresh(Some("mcp:read"), &set("mcp:admin openid")).unwrap(),
            set("mcp:read")
        );
    }

    #[test]
    fn client_registration_cuts_silently() {
        let got =
            resolve_authorization_scope(Some("mcp:read mcp:admin"), &[], &set("mcp:read openid"))
                .unwrap();
        assert_eq!(got, set("mcp:read"));
    }

    #[test]
    fn roles_cut_admin_scope_for_users() {
        assert_eq!(
            cut_to_role(&set("mcp:read mcp:admin openid"), Role::User),
            set("mcp:read openid")
        );
        assert_eq!(
            cut_to_role(&set("mcp:read mcp:admin"), Role::Admin),
            set("mcp:admin mcp:read")
        );
        assert_eq!(Role::Admin.claim(), vec!["user", "admin"]);
    }

    #[test]
    fn refresh_narrows_never_widens() {
        let granted = set("mcp:read openid");
        assert_eq!(narrow_on_refresh(None, &granted).unwrap(), granted);
        assert_eq!(
            narrow_on_refresh(Some("mcp:read"), &granted).unwrap(),
            set("mcp:read")
        );
        assert_eq!(
            narrow_on_refresh(Some("mcp:read mcp:admin"), &granted),
            Err(ScopeError::Widening)
        );
    }

    #[test]
    fn client_credentials_within_registration() {
        let reg = set("auth:admin auth:introspect");
        assert_eq!(resolve_client_credentials_scope(None, &reg).unwrap(), reg);
        assert_eq!(
            resolve_client_credentials_scope(Some("auth:admin"), &reg).unwrap(),
            set("auth:admin")
        );
        assert!(resolve_client_credentials_scope(Some("mcp:admin"), &reg).is_err());
    }
}
