//! `[[identity_providers]]`: the upstream identity providers users may sign in with
//! (any OpenID Connect provider, or a plain OAuth 2.0 one with a userinfo endpoint),
//! and `[login]`. Checked at start-up; messages name the key
//! (`identity_providers[0].client_id`).

use serde::{Deserialize, Serialize};
use shared::Secret;

use super::Settings;

/// How the upstream tells who signed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdpKind {
    /// OpenID Connect: discovery at `{issuer}/.well-known/openid-configuration`, a
    /// verified ID token, then the userinfo endpoint when the provider has one.
    #[default]
    Oidc,
    /// Plain OAuth 2.0 (GitHub-style): explicit endpoints, no ID token; the user is
    /// whoever the userinfo endpoint describes for the access token.
    Oauth2,
}

/// How our client authenticates at the upstream token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Where the upstream puts each fact, in the ID token or the userinfo answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClaimMapping {
    /// The stable user id at the upstream (a string or a number, as GitHub's `id`).
    pub subject: String,
    pub username: String,
    pub email: String,
    pub name: String,
    /// A list of group names (or one string); members of `access.admin_groups` are admins.
    pub groups: String,
    /// Optional: a claim naming the user's organisation domain (Google's `hd`). When
    /// set, `access.allowed_email_domains` is checked against it instead of the
    /// email's domain, and a user without it is not in any allowed domain.
    pub hosted_domain: String,
    /// Whether an email without an `email_verified` claim counts as verified. Off:
    /// only `email_verified: true` makes the email count (for `allowed_users`,
    /// `allowed_email_domains` and the email we hand on). Turn it on only for a
    /// provider that never issues an unverified address in `claims.email`.
    pub assume_email_verified: bool,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            username: "preferred_username".into(),
            email: "email".into(),
            name: "name".into(),
            groups: "groups".into(),
            hosted_domain: String::new(),
            assume_email_verified: false,
        }
    }
}

/// Who may sign in through this provider, and who is an admin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessPolicy {
    /// Users whose (verified) email is in one of these domains may sign in. Empty:
    /// no domain rule.
    pub allowed_email_domains: Vec<String>,
    /// Upstream usernames (the `claims.username` claim exactly as sent, case
    /// and all) or verified emails that may sign in. Empty: no user rule. With
    /// several lists set, a user on any one may sign in. Beware: where users choose
    /// their username (`preferred_username`, `nickname`), so can an attacker.
    pub allowed_users: Vec<String>,
    /// Upstream subjects (`claims.subject`, byte for byte) that may sign in: the
    /// one identifier users cannot choose or change.
    pub allowed_subjects: Vec<String>,
    /// Members of these groups get the admin role (and with it `mcp:admin`).
    pub admin_groups: Vec<String>,
}

impl AccessPolicy {
    /// Whether no list restricts sign-in (anyone the upstream authenticates may).
    pub fn open(&self) -> bool {
        self.allowed_email_domains.is_empty()
            && self.allowed_users.is_empty()
            && self.allowed_subjects.is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityProviderConfig {
    /// A slug (`a-z`, `0-9`, `-`): our callback is `{server.issuer}/idp/{id}/callback`.
    pub id: String,
    /// Shown on the login page: "Continue with <display_name>".
    pub display_name: String,
    pub kind: IdpKind,
    /// The upstream's issuer. OIDC: discovery and the ID token's `iss`; OAuth 2.0:
    /// compared with the RFC 9207 `iss` of the callback when the upstream sends one.
    pub issuer: String,
    /// OAuth 2.0 only (OIDC discovers them).
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    /// OAuth 2.0, optional: a GitHub-style list of `{email, primary, verified}` read
    /// when the userinfo answer has no email (`https://api.github.com/user/emails`).
    pub emails_endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// A file holding the client secret (instead of `client_secret`).
    pub client_secret_file: String,
    pub token_endpoint_auth_method: TokenEndpointAuth,
    /// Space-separated scopes asked of the upstream.
    pub scopes: String,
    pub claims: ClaimMapping,
    pub access: AccessPolicy,
}

impl IdentityProviderConfig {
    /// Our redirect URI at the upstream (registered there with our client).
    pub fn redirect_uri(&self, issuer: &str) -> String {
        format!("{}/idp/{}/callback", issuer.trim_end_matches('/'), self.id)
    }

    /// The scopes asked for: as configured, else `openid email profile` (OIDC) or none.
    pub fn effective_scopes(&self) -> String {
        match (self.scopes.trim(), self.kind) {
            ("", IdpKind::Oidc) => "openid email profile".into(),
            (s, _) => s.to_string(),
        }
    }

    /// The client secret: `client_secret`, or the trimmed content of `client_secret_file`.
    pub fn resolve_secret(&self, key: &str) -> Result<Secret, String> {
        if !self.client_secret_file.trim().is_empty() {
            let text = std::fs::read_to_string(self.client_secret_file.trim()).map_err(|e| {
                format!(
                    "{key}.client_secret_file {:?} cannot be read: {e}",
                    self.client_secret_file
                )
            })?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(format!(
                    "{key}.client_secret_file {:?} is empty",
                    self.client_secret_file
                ));
            }
            return Ok(Secret::new(secret));
        }
        Ok(self.client_secret.clone())
    }
}

fn is_slug(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An absolute http(s) URL without a fragment; plain http only on loopback hosts
/// (a provider's tokens and our client secret travel to it).
pub fn check_url(key: &str, value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{key} {value:?} is not a URL: {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("{key} {value:?} must be an http(s) URL"));
    }
    if url.fragment().is_some() {
        return Err(format!("{key} {value:?} must not have a fragment"));
    }
    if url.scheme() == "http"
        && !url
            .host()
            .is_some_and(crate::domain::redirect_uri::is_loopback_host)
    {
        return Err(format!(
            "{key} {value:?} must use https (plain http only on a loopback address)"
        ));
    }
    Ok(())
}

/// The start-up checks of `[login]` and `[[identity_providers]]`.
pub fn validate(settings: &Settings) -> Result<(), String> {
    let idps = &settings.identity_providers;
    if !settings.login.password && idps.is_empty() {
        return Err(
            "login.password is false but no [[identity_providers]] is configured: nobody could sign in"
                .into(),
        );
    }
    for (i, p) in idps.iter().enumerate() {
        let key = format!("identity_providers[{i}]");
        if !is_slug(&p.id) {
            return Err(format!(
                "{key}.id {:?} must be 1-32 characters of a-z, 0-9 and -",
                p.id
            ));
        }
        if idps[..i].iter().any(|q| q.id == p.id) {
            return Err(format!("{key}.id {:?} is used twice", p.id));
        }
        if p.display_name.trim().is_empty() {
            return Err(format!("{key}.display_name must not be empty"));
        }
        if p.client_id.trim().is_empty() {
            return Err(format!("{key}.client_id must not be empty"));
        }
        match (
            p.client_secret.is_empty(),
            p.client_secret_file.trim().is_empty(),
        ) {
            (false, false) => {
                return Err(format!(
                    "{key}: set one of client_secret and client_secret_file, not both"
                ))
            }
            (true, true) => {
                return Err(format!(
                    "{key}.client_secret (or client_secret_file, or the environment variable AUTH__IDENTITY_PROVIDERS__{i}__CLIENT_SECRET) must be set"
                ))
            }
            _ => {}
        }
        check_url(&format!("{key}.issuer"), &p.issuer)?;
        match p.kind {
            IdpKind::Oidc => {
                if !p.effective_scopes().split(' ').any(|s| s == "openid") {
                    return Err(format!(
                        "{key}.scopes must include openid for an OpenID Connect provider (or set kind = \"oauth2\")"
                    ));
                }
            }
            IdpKind::Oauth2 => {
                for (name, value) in [
                    ("authorization_endpoint", &p.authorization_endpoint),
                    ("token_endpoint", &p.token_endpoint),
                    ("userinfo_endpoint", &p.userinfo_endpoint),
                ] {
                    if value.trim().is_empty() {
                        return Err(format!("{key}.{name} must be set when kind = \"oauth2\""));
                    }
                    check_url(&format!("{key}.{name}"), value)?;
                }
            }
        }
        if !p.emails_endpoint.is_empty() {
            check_url(&format!("{key}.emails_endpoint"), &p.emails_endpoint)?;
        }
        for (name, value) in [
            ("subject", &p.claims.subject),
            ("username", &p.claims.username),
            ("email", &p.claims.email),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{key}.claims.{name} must not be empty"));
            }
        }
        for d in &p.access.allowed_email_domains {
            if d.trim().is_empty() || d.contains('@') || d.contains(' ') {
                return Err(format!(
                    "{key}.access.allowed_email_domains: {d:?} is not a domain"
                ));
            }
        }
        // A secret file is read now, so that a missing one stops the start.
        p.resolve_secret(&key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn corp() -> IdentityProviderConfig {
        IdentityProviderConfig {
            id: "corp".into(),
            display_name: "Corp SSO".into(),
            issuer: "https://login.example.com".into(),
            client_id: "mcp".into(),
            client_secret: Secret::new("s3cret"),
            ..Default::default()
        }
    }

    fn with(p: IdentityProviderConfig) -> Result<(), String> {
        Settings {
            identity_providers: vec![p],
            ..Default::default()
        }
        .validate()
    }

    #[test]
    fn a_provider_is_checked_key_by_key() {
        with(corp()).unwrap();
        type Change = fn(&mut IdentityProviderConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|p| p.id = "Corp SSO".into(), "identity_providers[0].id"),
            (
                |p| p.display_name.clear(),
                "identity_providers[0].display_name",
            ),
            (|p| p.client_id.clear(), "identity_providers[0].client_id"),
            (
                |p| p.client_secret = Secret::default(),
                "identity_providers[0].client_secret",
            ),
            (
                |p| p.client_secret_file = "/nonexistent/secret".into(),
                "client_secret_file",
            ),
            (
                |p| p.issuer = "not a url".into(),
                "identity_providers[0].issuer",
            ),
            (
                |p| p.issuer = "http://login.example.com".into(),
                "identity_providers[0].issuer",
            ),
            (
                |p| {
                    p.kind = IdpKind::Oauth2;
                    p.authorization_endpoint = "https://login.example.com/authorize".into();
                    p.token_endpoint = "http://login.example.com/token".into();
                    p.userinfo_endpoint = "https://login.example.com/user".into();
                },
                "identity_providers[0].token_endpoint",
            ),
            (
                |p| p.emails_endpoint = "http://api.example.com/emails".into(),
                "identity_providers[0].emails_endpoint",
            ),
            (
                |p| p.scopes = "email profile".into(),
                "identity_providers[0].scopes",
            ),
            (
                |p| p.kind = IdpKind::Oauth2,
                "identity_providers[0].authorization_endpoint",
            ),
            (
                |p| p.access.allowed_email_domains = vec!["a@b".into()],
                "identity_providers[0].access.allowed_email_domains",
            ),
            (
                |p| p.claims.subject.clear(),
                "identity_providers[0].claims.subject",
            ),
        ];
        for (change, key) in cases {
            let mut p = corp();
            change(&mut p);
            let e = with(p).unwrap_err();
            assert!(e.contains(key), "{key} not named in: {e}");
        }
        // Plain http on a loopback address is fine (local tests).
        for issuer in [
            "http://127.0.0.1:9000",
            "http://localhost:9000",
            "http://[::1]:9000",
        ] {
            let mut p = corp();
            p.issuer = issuer.into();
            with(p).unwrap();
        }
        let s = Settings {
            identity_providers: vec![corp(), corp()],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("used twice"));
    }

    #[test]
    fn password_login_off_needs_a_provider_and_a_secret_file_is_read() {
        let mut s = Settings::default();
        s.login.password = false;
        assert!(s.validate().unwrap_err().contains("login.password"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let mut p = corp();
        p.client_secret = Secret::default();
        p.client_secret_file = file.display().to_string();
        assert_eq!(p.resolve_secret("x").unwrap().expose(), "from-a-file");
        s.identity_providers = vec![p];
        s.validate().unwrap();
        assert_eq!(
            corp().redirect_uri("https://as.example/"),
            "https://as.example/idp/corp/callback"
        );
        assert_eq!(corp().effective_scopes(), "openid email profile");
    }

    #[test]
    fn a_secret_comes_from_an_indexed_environment_variable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.toml");
        std::fs::write(
            &file,
            r#"
[login]
password = false

[[identity_providers]]
id = "corp"
display_name = "Corp SSO"
issuer = "https://login.example.com"
client_id = "mcp"

[identity_providers.access]
admin_groups = ["mcp-admins"]

[[identity_providers]]
id = "gh"
display_name = "GitHub"
kind = "oauth2"
issuer = "https://github.com"
authorization_endpoint = "https://github.com/login/oauth/authorize"
token_endpoint = "https://github.com/login/oauth/access_token"
userinfo_endpoint = "https://api.github.com/user"
client_id = "gh-client"
client_secret = "in-the-file"
"#,
        )
        .unwrap();
        let env = [(
            "AUTH__IDENTITY_PROVIDERS__0__CLIENT_SECRET".to_string(),
            "from-env".to_string(),
        )];
        let s: Settings = shared::settings::load_with_env(
            Some(&file),
            "AUTH",
            crate::settings::LIST_KEYS,
            env.into_iter(),
        )
        .unwrap();
        assert!(!s.login.password);
        assert_eq!(s.identity_providers.len(), 2);
        assert_eq!(s.identity_providers[0].client_secret.expose(), "from-env");
        assert_eq!(
            s.identity_providers[0].access.admin_groups,
            vec!["mcp-admins"]
        );
        assert_eq!(
            s.identity_providers[0].claims.username,
            "preferred_username"
        );
        assert_eq!(s.identity_providers[1].kind, IdpKind::Oauth2);
        assert_eq!(
            s.identity_providers[1].client_secret.expose(),
            "in-the-file"
        );
        s.validate().unwrap();
    }
}

#[cfg(test)]
mod preset_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::Path;

    #[test]
    fn every_preset_loads_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/idp");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let mut s = Settings::load(Some(&path)).unwrap();
            assert_eq!(s.identity_providers.len(), 1, "{stem}");
            let p = &mut s.identity_providers[0];
            assert_eq!(p.id, stem);
            // The presets point at secret files that exist in production only.
            if !p.client_secret_file.is_empty() {
                p.client_secret_file.clear();
                p.client_secret = Secret::new("from-test");
            }
            s.validate().unwrap_or_else(|e| panic!("{stem}: {e}"));
            seen.push(stem);
        }
        seen.sort();
        assert_eq!(
            seen,
            ["auth0", "entra", "github", "google", "keycloak", "okta"]
        );
    }
}
