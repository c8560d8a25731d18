//! Client authentication at the token, revocation and introspection endpoints:
//! `none`, `client_secret_basic`, `client_secret_post`. Secrets are compared as
//! SHA-256 digests in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use shared::secret::{constant_time_eq, sha256_b64url};

/// The credentials a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
    pub via_basic: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientAuthError {
    #[error("client authentication is missing")]
    Missing,
    #[error("malformed Authorization header")]
    MalformedBasic,
    #[error("client credentials were sent in more than one way")]
    Multiple,
    #[error("client authentication failed")]
    Failed,
}

fn percent_decode(raw: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// The credentials part of an `Authorization: Basic ...` header (the scheme is
/// case-insensitive, RFC 9110 §11.1).
pub fn basic_credentials(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then_some(rest)
}

/// Reads `Authorization: Basic` (RFC 6749 §2.3.1: form-encoded id and secret) and
/// the form's `client_id` / `client_secret`.
pub fn presented(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Presented, ClientAuthError> {
    if let Some(header) = authorization {
        let Some(encoded) = basic_credentials(header) else {
            // A Bearer header on /token is not client authentication.
            return from_form(form_client_id, form_secret);
        };
        if form_secret.is_some_and(|s| !s.is_empty()) {
            return Err(ClientAuthError::Multiple);
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| ClientAuthError::MalformedBasic)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ClientAuthError::MalformedBasic)?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or(ClientAuthError::MalformedBasic)?;
        let id = percent_decode(id).ok_or(ClientAuthError::MalformedBasic)?;
        let secret = percent_decode(secret).ok_or(ClientAuthError::MalformedBasic)?;
        if let Some(form_id) = form_client_id {
            if form_id != id {
                return Err(ClientAuthError::Failed);
            }
        }
        if id.is_empty() {
            return Err(ClientAuthError::MalformedBasic);
        }
        // Some libraries send `client_id:` for public clients: no secret.
        return Ok(Presented {
            client_id: id,
            secret: Some(secret).filter(|s| !s.is_empty()),
            via_basic: true,
        });
    }
    from_form(form_client_id, form_secret)
}

fn from_form(client_id: Option<&str>, secret: Option<&str>) -> Result<Presented, ClientAuthError> {
    let client_id = client_id
        .filter(|c| !c.is_empty())
        .ok_or(ClientAuthError::Missing)?;
    Ok(Presented {
        client_id: client_id.to_string(),
        secret: secret.filter(|s| !s.is_empty()).map(str::to_owned),
        via_basic: false,
    })
}

/// Checks presented credentials against the client's stored secret hash (`None` for
/// public clients). Public clients must not present a secret; confidential clients
/// must present the right one (either method is accepted).
pub fn verify(
    presented: &Presented,
    stored_secret_hash: Option<&str>,
) -> Result<(), ClientAuthError> {
    match (stored_secret_hash, presented.secret.as_deref()) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(ClientAuthError::Failed),
        (Some(_), None) => Err(ClientAuthError::Missing),
        (Some(hash), Some(secret)) => {
            if constant_time_eq(&sha256_b64url(secret), hash) {
                Ok(())
            } else {
                Err(ClientAuthError::Failed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn basic_is_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret"));
        let p = presented(Some(&header), None, None).unwrap();
        assert_eq!(p.client_id, "my client");
        assert_eq!(p.secret.as_deref(), Some("s:cret"));
        assert!(p.via_basic);
    }

    #[test]
    fn form_and_mixed() {
        let p = presented(None, Some("c"), Some("s")).unwrap();
        assert_eq!(
            (p.client_id.as_str(), p.secret.as_deref()),
            ("c", Some("s"))
        );
        let header = format!("Basic {}", STANDARD.encode("c:s"));
        assert_eq!(
            presented(Some(&header), Some("c"), Some("s")),
            Err(ClientAuthError::Multiple)
        );
        assert_eq!(
            presented(Some(&header), Some("other"), None),
            Err(ClientAuthError::Failed)
        );
        assert_eq!(presented(None, None, None), Err(ClientAuthError::Missing));
        // Empty secrets (public clients in some libraries) count as none.
        assert_eq!(presented(None, Some("c"), Some("")).unwrap().secret, None);
        let empty = format!("Basic {}", STANDARD.encode("c:"));
        assert_eq!(presented(Some(&empty), None, None).unwrap().secret, None);
        assert_eq!(
            presented(Some("Basic !!!"), None, None),
            Err(ClientAuthError::MalformedBasic)
        );
    }

    #[test]
    fn basic_scheme_is_case_insensitive() {
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let header = format!("{scheme} {}", STANDARD.encode("c:s"));
            let p = presented(Some(&header), None, None).unwrap();
            assert_eq!(
                (p.client_id.as_str(), p.secret.as_deref()),
                ("c", Some("s"))
            );
            assert!(basic_credentials(&header).is_some());
        }
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic"), None);
        assert_eq!(basic_credentials("é"), None);
    }

    #[test]
    fn verify_secrets() {
        let hash = sha256_b64url("secret");
        let with = |s: Option<&str>| Presented {
            client_id: "c".into(),
            secret: s.map(Into::into),
            via_basic: false,
        };
        assert!(verify(&with(Some("secret")), Some(&hash)).is_ok());
        assert_eq!(
            verify(&with(Some("wrong")), Some(&hash)),
            Err(ClientAuthError::Failed)
        );
        assert_eq!(
            verify(&with(None), Some(&hash)),
            Err(ClientAuthError::Missing)
        );
        assert!(verify(&with(None), None).is_ok());
        assert_eq!(verify(&with(Some("x")), None), Err(ClientAuthError::Failed));
    }
}
