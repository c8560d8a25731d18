//! RFC 6750 bearer tokens on the wire, for both services: reading the token from the
//! `Authorization` header (§2.1) and writing the `WWW-Authenticate: Bearer` challenge
//! (§3).

use std::fmt;

use actix_web::http::header::{self, HeaderMap, HeaderValue, InvalidHeaderValue};

/// What a request's `Authorization` header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No header, or another scheme (RFC 6750 §3.1: the challenge has no error code
    /// then).
    Missing,
    /// `Bearer` with an empty or syntactically impossible token, or several
    /// `Authorization` headers (which one would count is ambiguous).
    Malformed,
    Token(&'a str),
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let trimmed = s.trim_end_matches('=');
    !trimmed.is_empty()
        && trimmed.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The bearer token of the request's one `Authorization` header, checked against
/// the `b64token` syntax.
pub fn bearer_token(headers: &HeaderMap) -> Presented<'_> {
    match bearer_credentials(headers) {
        Presented::Token(token) if !is_b64token(token) => Presented::Malformed,
        presented => presented,
    }
}

/// [`bearer_token`] without the syntax scan of the token, for looking up a token
/// that passed it before (a cache of verified tokens). UTF-8 validation runs
/// word-at-a-time (`HeaderValue::to_str` checks byte by byte).
pub fn bearer_credentials(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION);
    let Some(first) = values.next() else {
        return Presented::Missing;
    };
    if values.next().is_some() {
        return Presented::Malformed;
    }
    let Ok(value) = std::str::from_utf8(first.as_bytes()) else {
        return Presented::Malformed;
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Missing;
    }
    Presented::Token(rest.trim())
}

/// A `WWW-Authenticate: Bearer` challenge (RFC 6750 §3), auth-params in the order
/// they are added: `Bearer realm="x", error="invalid_token", ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge(String);

impl Default for BearerChallenge {
    fn default() -> Self {
        Self::new()
    }
}

impl BearerChallenge {
    pub fn new() -> Self {
        BearerChallenge(String::from("Bearer"))
    }

    /// Adds `name="value"`. Every value is written as a quoted-string (RFC 9110
    /// §5.6.4) of the characters RFC 6750 §3 allows in `error`, `error_description`
    /// and `scope` (%x20-21 / %x23-5B / %x5D-7E); any other character (a quote, a
    /// backslash, a control or non-ASCII character) becomes a space, so the value
    /// never needs escaping and the header is always valid.
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.0.push_str(if self.0.len() == "Bearer".len() {
            " "
        } else {
            ", "
        });
        self.0.push_str(name);
        self.0.push_str("=\"");
        self.0.extend(value.chars().map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => ' ',
        }));
        self.0.push('"');
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The header value; fails only for a parameter name that is not a header-safe
    /// token.
    pub fn header_value(&self) -> Result<HeaderValue, InvalidHeaderValue> {
        HeaderValue::from_str(&self.0)
    }
}

impl fmt::Display for BearerChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("x")),
            );
        }
        h
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer_token(&headers(&[])), Presented::Missing);
        assert_eq!(bearer_token(&headers(&["Basic abc"])), Presented::Missing);
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def-ghi_"])),
            Presented::Token("abc.def-ghi_")
        );
        assert_eq!(
            bearer_token(&headers(&["bearer  abc=="])),
            Presented::Token("abc==")
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a+b/c~"])),
            Presented::Token("a+b/c~")
        );
        assert_eq!(bearer_token(&headers(&["Bearer"])), Presented::Malformed);
        assert_eq!(bearer_token(&headers(&["Bearer ="])), Presented::Malformed);
        assert_eq!(
            bearer_token(&headers(&["Bearer a b"])),
            Presented::Malformed
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Presented::Malformed
        );
        let mut non_utf8 = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(b"Bearer \xff") {
            non_utf8.insert(header::AUTHORIZATION, v);
        }
        assert_eq!(bearer_token(&non_utf8), Presented::Malformed);
    }

    #[test]
    fn credentials_skip_only_the_syntax_check() {
        assert_eq!(
            bearer_credentials(&headers(&["Bearer a b"])),
            Presented::Token("a b")
        );
        assert_eq!(
            bearer_credentials(&headers(&["Basic abc"])),
            Presented::Missing
        );
        assert_eq!(
            bearer_credentials(&headers(&["Bearer a", "Bearer b"])),
            Presented::Malformed
        );
    }

    #[test]
    fn challenge_params_are_quoted_in_order() {
        let challenge = BearerChallenge::new()
            .param("realm", "auth-server")
            .param("error", "invalid_token")
            .param("error_description", "token has \"expired\"\n")
            .param("scope", "mcp:read openid");
        assert_eq!(
            challenge.as_str(),
            "Bearer realm=\"auth-server\", error=\"invalid_token\", error_description=\"token has  expired  \", scope=\"mcp:read openid\""
        );
        assert!(challenge.header_value().is_ok());
        assert_eq!(BearerChallenge::new().as_str(), "Bearer");
    }

    #[test]
    fn values_keep_only_what_rfc6750_allows() {
        let challenge = BearerChallenge::new().param("error_description", "a\\b\"c\td\u{e9}e~!#[]");
        assert_eq!(
            challenge.to_string(),
            "Bearer error_description=\"a b c d e~!#[]\""
        );
        assert!(challenge.header_value().is_ok());
    }
}
