//! The claim rules shared by both verifiers: `iss`, `aud`, `exp`/`nbf` with leeway,
//! `typ`, the algorithm allow-list, and turning claims into a [`Principal`]. Pure
//! functions; the JWKS and introspection verifiers only differ in where the claims
//! come from.

use serde::Deserialize;
use shared::{Audience, ScopeSet};

use super::{Principal, VerifyError};

/// A claim that IdPs send either as a space-delimited string or as an array
/// (`scope`/`scp` in Okta and Entra, `roles`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    /// Items, splitting a single string on whitespace.
    pub fn items(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => s.split_whitespace().map(str::to_string).collect(),
            StringOrList::Many(v) => v.iter().filter(|s| !s.is_empty()).cloned().collect(),
        }
    }
}

/// The claims we read, from a JWT payload or an RFC 7662 answer. Unknown claims are
/// ignored; numeric dates may be integers or floats.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawClaims {
    pub active: Option<bool>,
    pub token_type: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<Audience>,
    pub exp: Option<serde_json::Number>,
    pub nbf: Option<serde_json::Number>,
    pub iat: Option<serde_json::Number>,
    pub jti: Option<String>,
    /// The grant (session) the token belongs to; our AS sets it.
    pub sid: Option<String>,
    pub client_id: Option<String>,
    /// Entra v2 / OIDC authorised party.
    pub azp: Option<String>,
    /// Entra v1 client id.
    pub appid: Option<String>,
    pub scope: Option<StringOrList>,
    pub scp: Option<StringOrList>,
    pub roles: Option<StringOrList>,
    pub preferred_username: Option<String>,
    pub username: Option<String>,
    pub email: Option<String>,
    pub upn: Option<String>,
    pub name: Option<String>,
}

fn numeric_date(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

/// Where the claims came from: a signed JWT must carry `iss` and `sub`; an
/// introspection answer (authenticated, from the configured AS) may omit them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimSource {
    Jwt,
    Introspection,
}

/// The per-deployment rules, computed once from the settings.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    issuer: String,
    issuer_canonical: Option<String>,
    audiences: Vec<String>,
    leeway: i64,
}

impl ClaimRules {
    pub fn new(issuer: &str, audiences: Vec<String>, leeway_secs: u64) -> Self {
        ClaimRules {
            issuer: issuer.to_string(),
            issuer_canonical: shared::resource::canonical_url(issuer).ok(),
            audiences,
            leeway: i64::try_from(leeway_secs).unwrap_or(60),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// `iss` equals the configured issuer: byte-identical, or identical after URL
    /// canonicalisation (trailing slash, case of scheme/host, default port).
    pub fn issuer_matches(&self, iss: &str) -> bool {
        if iss == self.issuer {
            return true;
        }
        match (&self.issuer_canonical, shared::resource::canonical_url(iss)) {
            (Some(expected), Ok(found)) => *expected == found,
            _ => false,
        }
    }

    /// Applies the `iss`, `aud`, `exp`, `nbf` rules at `now` (unix seconds) and
    /// builds the principal.
    pub fn principal(
        &self,
        raw: RawClaims,
        source: ClaimSource,
        now: i64,
    ) -> Result<Principal, VerifyError> {
        match (&raw.iss, source) {
            (Some(iss), _) if !self.issuer_matches(iss) => return Err(VerifyError::WrongIssuer),
            (None, ClaimSource::Jwt) => return Err(VerifyError::WrongIssuer),
            _ => {}
        }
        let aud = raw.aud.as_ref().ok_or(VerifyError::WrongAudience)?;
        if !shared::resource::audience_matches(aud, &self.audiences) {
            return Err(VerifyError::WrongAudience);
        }
        let exp = raw
            .exp
            .as_ref()
            .and_then(numeric_date)
            .ok_or(VerifyError::Malformed)?;
        if now > exp.saturating_add(self.leeway) {
            return Err(VerifyError::Expired);
        }
        if let Some(nbf) = raw.nbf.as_ref() {
            let nbf = numeric_date(nbf).ok_or(VerifyError::Malformed)?;
            if nbf > now.saturating_add(self.leeway) {
                return Err(VerifyError::NotYetValid);
            }
        }
        let client_id = raw.client_id.or(raw.azp).or(raw.appid);
        let username = raw
            .preferred_username
            .or(raw.username)
            .or(raw.email.clone())
            .or(raw.upn);
        let subject = match (raw.sub, source) {
            (Some(sub), _) if !sub.is_empty() => sub,
            (_, ClaimSource::Jwt) => return Err(VerifyError::Malformed),
            (_, ClaimSource::Introspection) => username
                .clone()
                .or_else(|| client_id.clone())
                .ok_or(VerifyError::Malformed)?,
        };
        let scopes = raw
            .scope
            .or(raw.scp)
            .map(|s| ScopeSet::from_iter(s.items()))
            .unwrap_or_default();
        Ok(Principal {
            subject,
            username,
            name: raw.name,
            email: raw.email,
            roles: raw.roles.map(|r| r.items()).unwrap_or_default(),
            client_id,
            scopes,
            audience: aud.values().map(str::to_string).collect(),
            issuer: raw.iss.unwrap_or_else(|| self.issuer.clone()),
            expires_at: exp,
            token_id: raw.jti,
            grant_id: raw.sid,
        })
    }
}

/// `typ` rule: when a type is required, the header's `typ` must equal it,
/// case-insensitively, ignoring an `application/` prefix on either side.
pub fn check_typ(found: Option<&str>, required: Option<&str>) -> Result<(), VerifyError> {
    let Some(required) = required else {
        return Ok(());
    };
    let normalise = |t: &str| {
        let t = t.trim().to_ascii_lowercase();
        t.strip_prefix("application/")
            .map(str::to_string)
            .unwrap_or(t)
    };
    match found {
        Some(found) if normalise(found) == normalise(required) => Ok(()),
        _ => Err(VerifyError::WrongType),
    }
}

/// Algorithm rule: every `HS*` is refused whatever the configuration (`none` and
/// other names jsonwebtoken does not know never get this far); otherwise the header
/// `alg` must be one of the accepted algorithms.
pub fn check_alg(
    alg: jsonwebtoken::Algorithm,
    accepted: &[jsonwebtoken::Algorithm],
) -> Result<jsonwebtoken::Algorithm, VerifyError> {
    if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac || !accepted.contains(&alg) {
        return Err(VerifyError::DisallowedAlgorithm);
    }
    Ok(alg)
}

/// RFC 7662 `token_type` rule: absent is fine; present, it must name an access
/// token (`access_token`, `bearer`, or the RFC 8693 URN). `refresh_token`, `N_A`,
/// `DPoP` (we cannot check a proof) and anything else are refused.
pub fn check_token_type(token_type: Option<&str>) -> Result<(), VerifyError> {
    match token_type.map(|t| t.trim().to_ascii_lowercase()) {
        None => Ok(()),
        Some(t)
            if t == "access_token"
                || t == "bearer"
                || t == "urn:ietf:params:oauth:token-type:access_token" =>
        {
            Ok(())
        }
        Some(_) => Err(VerifyError::WrongType),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    const ISS: &str = "http://127.0.0.1:3001";
    const RES: &str = "http://127.0.0.1:3000/mcp";
    const NOW: i64 = 1_800_000_000;

    fn rules() -> ClaimRules {
        ClaimRules::new(ISS, vec![RES.to_string()], 60)
    }

    fn raw(v: serde_json::Value) -> RawClaims {
        serde_json::from_value(v).unwrap()
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "iss": ISS, "sub": "u1", "aud": RES, "exp": NOW + 600, "iat": NOW, "jti": "j1",
            "client_id": "c1", "scope": "mcp:read openid", "preferred_username": "alice",
            "email": "a@example.com", "name": "Alice", "roles": ["user"]
        })
    }

    fn with(key: &str, value: serde_json::Value) -> RawClaims {
        let mut v = good();
        v[key] = value;
        raw(v)
    }

    #[test]
    fn builds_principal_from_rfc9068_claims() {
        let p = rules()
            .principal(raw(good()), ClaimSource::Jwt, NOW)
            .unwrap();
        assert_eq!(p.subject, "u1");
        assert_eq!(p.username.as_deref(), Some("alice"));
        assert_eq!(p.email.as_deref(), Some("a@example.com"));
        assert_eq!(p.name.as_deref(), Some("Alice"));
        assert_eq!(p.roles, vec!["user"]);
        assert_eq!(p.client_id.as_deref(), Some("c1"));
        assert!(p.scopes.grants("mcp:read") && p.scopes.grants("openid"));
        assert_eq!(p.audience, vec![RES]);
        assert_eq!(p.issuer, ISS);
        assert_eq!(p.expires_at, NOW + 600);
        assert_eq!(p.token_id.as_deref(), Some("j1"));
    }

    #[test]
    fn issuer_rules() {
        let r = rules();
        assert_eq!(
            r.principal(
                with("iss", "http://evil:3001".into()),
                ClaimSource::Jwt,
                NOW
            ),
            Err(VerifyError::WrongIssuer)
        );
        // Canonical equality (trailing slash) is accepted.
        assert!(r
            .principal(
                with("iss", "http://127.0.0.1:3001/".into()),
                ClaimSource::Jwt,
                NOW
            )
            .is_ok());
        let mut v = good();
        v.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            r.principal(raw(v.clone()), ClaimSource::Jwt, NOW),
            Err(VerifyError::WrongIssuer)
        );
        assert!(r.principal(raw(v), ClaimSource::Introspection, NOW).is_ok());
    }

    #[test]
    fn audience_rules() {
        let r = rules();
        assert_eq!(
            r.principal(
                with("aud", "http://127.0.0.1:3000/other".into()),
                ClaimSource::Jwt,
                NOW
            ),
            Err(VerifyError::WrongAudience)
        );
        assert!(r
            .principal(
                with(
                    "aud",
                    serde_json::json!(["x", "http://127.0.0.1:3000/mcp/"])
                ),
                ClaimSource::Jwt,
                NOW
            )
            .is_ok());
        let mut v = good();
        v.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            r.principal(raw(v), ClaimSource::Introspection, NOW),
            Err(VerifyError::WrongAudience)
        );
    }

    #[test]
    fn time_rules_with_leeway() {
        let r = rules();
        assert!(r
            .principal(with("exp", (NOW - 59).into()), ClaimSource::Jwt, NOW)
            .is_ok());
        assert_eq!(
            r.principal(with("exp", (NOW - 61).into()), ClaimSource::Jwt, NOW),
            Err(VerifyError::Expired)
        );
        assert!(r
            .principal(with("nbf", (NOW + 59).into()), ClaimSource::Jwt, NOW)
            .is_ok());
        assert_eq!(
            r.principal(with("nbf", (NOW + 61).into()), ClaimSource::Jwt, NOW),
            Err(VerifyError::NotYetValid)
        );
        assert!(r
            .principal(
                with("exp", serde_json::json!((NOW + 10) as f64 + 0.5)),
                ClaimSource::Jwt,
                NOW
            )
            .is_ok());
        let mut v = good();
        v.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            r.principal(raw(v), ClaimSource::Jwt, NOW),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn scope_scp_string_or_array_and_username_fallbacks() {
        let r = rules();
        let mut v = good();
        let o = v.as_object_mut().unwrap();
        o.remove("scope");
        o.remove("preferred_username");
        o.insert("scp".into(), serde_json::json!(["mcp:read", "mcp:admin"]));
        o.insert("azp".into(), "entra-app".into());
        o.remove("client_id");
        let p = r.principal(raw(v), ClaimSource::Jwt, NOW).unwrap();
        assert!(p.scopes.grants("mcp:admin"));
        assert_eq!(p.username.as_deref(), Some("a@example.com"));
        assert_eq!(p.client_id.as_deref(), Some("entra-app"));
        let p = r
            .principal(with("scp", "a b".into()), ClaimSource::Jwt, NOW)
            .unwrap();
        // `scope` wins over `scp` when both are present.
        assert!(p.scopes.grants("openid") && !p.scopes.grants("a"));
        let p = r
            .principal(with("username", "bob".into()), ClaimSource::Jwt, NOW)
            .unwrap();
        assert_eq!(p.username.as_deref(), Some("alice"));
    }

    #[test]
    fn introspection_subject_fallback() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("sub");
        assert_eq!(
            rules().principal(raw(v.clone()), ClaimSource::Jwt, NOW),
            Err(VerifyError::Malformed)
        );
        let p = rules()
            .principal(raw(v), ClaimSource::Introspection, NOW)
            .unwrap();
        assert_eq!(p.subject, "alice");
    }

    #[test]
    fn typ_rule() {
        assert_eq!(check_typ(None, None), Ok(()));
        assert_eq!(check_typ(Some("JWT"), None), Ok(()));
        assert_eq!(check_typ(Some("at+jwt"), Some("at+jwt")), Ok(()));
        assert_eq!(check_typ(Some("AT+JWT"), Some("at+jwt")), Ok(()));
        assert_eq!(
            check_typ(Some("application/at+jwt"), Some("at+jwt")),
            Ok(())
        );
        assert_eq!(
            check_typ(Some("JWT"), Some("at+jwt")),
            Err(VerifyError::WrongType)
        );
        assert_eq!(check_typ(None, Some("at+jwt")), Err(VerifyError::WrongType));
    }

    #[test]
    fn alg_rule() {
        let accepted = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];
        assert_eq!(check_alg(Algorithm::ES256, &accepted), Ok(Algorithm::ES256));
        assert_eq!(check_alg(Algorithm::EdDSA, &accepted), Ok(Algorithm::EdDSA));
        for bad in [
            Algorithm::HS256,
            Algorithm::HS512,
            Algorithm::ES384,
            Algorithm::PS256,
        ] {
            assert_eq!(
                check_alg(bad, &accepted),
                Err(VerifyError::DisallowedAlgorithm),
                "{bad:?}"
            );
        }
        // HS* are refused even if someone managed to put them in the accepted list.
        assert_eq!(
            check_alg(Algorithm::HS256, &[Algorithm::HS256]),
            Err(VerifyError::DisallowedAlgorithm)
        );
    }

    #[test]
    fn token_type_rule() {
        assert_eq!(check_token_type(None), Ok(()));
        assert_eq!(check_token_type(Some("access_token")), Ok(()));
        assert_eq!(check_token_type(Some("Bearer")), Ok(()));
        assert_eq!(
            check_token_type(Some("refresh_token")),
            Err(VerifyError::WrongType)
        );
        assert_eq!(check_token_type(Some("N_A")), Err(VerifyError::WrongType));
        assert_eq!(check_token_type(Some("DPoP")), Err(VerifyError::WrongType));
    }
}
