//! HTML pages (askama, auto-escaped) and the headers every page carries: a strict
//! CSP whose only allowance is the hash of our inline stylesheet, no framing, no
//! referrer, no caching.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

const CSS: &str = "\
:root{color-scheme:light dark;--bg:#f4f5f7;--card:#fff;--fg:#1d2330;--muted:#5b6475;--accent:#2f5bea;--accent-fg:#fff;--border:#d9dde5;--field:#8a93a6;--err:#b42318;--errbg:#fef3f2}\
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--card:#1b1f27;--fg:#e6e9ef;--muted:#a3abba;--accent:#6c8cff;--accent-fg:#0b0e14;--border:#323845;--field:#6b7385;--err:#ffb4a9;--errbg:#3a1d1a}}\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;padding:1rem}\
.card{width:100%;max-width:26rem;background:var(--card);border:1px solid var(--border);border-radius:12px;padding:2rem;box-shadow:0 4px 24px rgba(0,0,0,.06)}\
.brand{margin:0 0 1rem;font-weight:600;color:var(--accent);letter-spacing:.02em}\
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1rem;margin:1.25rem 0 .5rem}\
.lead{margin:0 0 .5rem}.muted{color:var(--muted)}.small{font-size:.875rem}\
label{display:block;font-weight:600;margin:1rem 0 .25rem}\
input[type=text],input[type=password]{width:100%;padding:.6rem .75rem;border:1px solid var(--field);border-radius:8px;background:transparent;color:inherit;font:inherit}\
input:focus-visible,button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}\
button{font:inherit;font-weight:600;border-radius:8px;padding:.65rem 1.25rem;cursor:pointer;border:1px solid var(--border)}\
.primary{background:var(--accent);color:var(--accent-fg);border-color:var(--accent)}\
.secondary{background:transparent;color:var(--fg);border-color:var(--field)}\
input[aria-invalid=true]{border-color:var(--err)}\
form>.primary{width:100%;margin-top:1.5rem}\
.actions{display:flex;gap:.75rem;justify-content:flex-end;margin-top:1.5rem}\
.error{background:var(--errbg);color:var(--err);padding:.75rem;border-radius:8px}\
.hint{margin-top:1.5rem;font-size:.875rem;color:var(--muted);border-top:1px solid var(--border);padding-top:1rem}\
.facts{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:1rem 0}.facts dt{color:var(--muted)}.facts dd{margin:0;overflow-wrap:anywhere}\
.scopes{padding-left:1.25rem;margin:0}.scope-name{font-family:ui-monospace,monospace;font-weight:600}\
code{font-family:ui-monospace,monospace}\
a{color:var(--accent)}.switch{display:block;font-size:.875rem;margin-top:.25rem}\
.idp{width:100%;margin-top:.75rem}.or{text-align:center;margin:1rem 0 0}\
.notice{border-left:3px solid var(--field);padding:.5rem .75rem;margin:1rem 0 0;font-size:.875rem;color:var(--muted)}";

fn csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(CSS.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
        )
    })
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub css: &'a str,
    pub action: &'a str,
    pub client_name: &'a str,
    pub redirect_host: &'a str,
    pub hidden: &'a [(String, String)],
    pub csrf_token: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub demo: bool,
    /// The password form (`login.password`).
    pub password: bool,
    /// One "Continue with <name>" form per identity provider: (action, display name).
    pub providers: &'a [(String, String)],
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub css: &'a str,
    pub action: &'a str,
    pub client_name: &'a str,
    pub client_host: Option<&'a str>,
    pub redirect_host: &'a str,
    pub username: &'a str,
    pub resource: &'a str,
    pub scopes: &'a [(String, &'static str)],
    /// Requested scopes this account cannot hold.
    pub withheld: &'a [String],
    pub switch_account_url: &'a str,
    pub hidden: &'a [(String, String)],
    pub csrf_token: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    css: &'a str,
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "info.html")]
struct InfoPage<'a> {
    css: &'a str,
    title: &'a str,
    message: &'a str,
}

/// A page that tells the user something went as asked (signed out).
pub fn info_page(b: HttpResponseBuilder, title: &str, message: &str) -> HttpResponse {
    render(
        b,
        &InfoPage {
            css: CSS,
            title,
            message,
        },
    )
}

pub fn css() -> &'static str {
    CSS
}

/// Adds the page security headers.
pub fn secure(b: &mut HttpResponseBuilder) {
    b.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp()))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
}

pub fn render(mut b: HttpResponseBuilder, template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(body) => {
            secure(&mut b);
            b.body(body)
        }
        Err(e) => {
            log::error!("template rendering failed: {e}");
            HttpResponse::InternalServerError().body("internal error")
        }
    }
}

pub fn error_page(b: HttpResponseBuilder, title: &str, message: &str) -> HttpResponse {
    render(
        b,
        &ErrorPage {
            css: CSS,
            title,
            message,
        },
    )
}

/// Human descriptions of scopes for the consent page.
pub fn describe_scope(scope: &str) -> &'static str {
    match scope {
        shared::scopes::MCP_READ => "Use the MCP server's tools as you",
        shared::scopes::MCP_ADMIN => "Use the MCP server's administrative tools",
        shared::scopes::OPENID => "Confirm your identity",
        shared::scopes::PROFILE => "See your name and username",
        shared::scopes::EMAIL => "See your email address",
        shared::scopes::OFFLINE_ACCESS => "Stay signed in (refresh access without asking you)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pages_escape_untrusted_values() {
        let hidden = vec![("client_id".to_string(), "\"><script>x</script>".to_string())];
        let html = LoginPage {
            css: CSS,
            action: "login",
            client_name: "<img src=x onerror=alert(1)>",
            redirect_host: "evil\"host",
            hidden: &hidden,
            csrf_token: "t",
            username: "",
            error: None,
            demo: false,
            password: true,
            providers: &[],
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>x"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("&lt;img") || html.contains("&#60;img"));
        assert!(!html.contains("demo123"));
        assert_eq!(html.matches("<form method=\"post\"").count(), 1);
    }

    #[test]
    fn login_errors_are_tied_to_the_fields_and_demo_hint_only_in_demo_mode() {
        let page = |error: Option<&'static str>, demo: bool| {
            LoginPage {
                css: CSS,
                action: "login",
                client_name: "App",
                redirect_host: "localhost:6274",
                hidden: &[],
                csrf_token: "t",
                username: "demo",
                error,
                demo,
                password: true,
                providers: &[],
            }
            .render()
            .unwrap()
        };
        let html = page(Some("Invalid username or password."), false);
        assert!(html.contains("id=\"login-error\" role=\"alert\""));
        assert_eq!(html.matches("aria-describedby=\"login-error\"").count(), 2);
        assert_eq!(html.matches("aria-invalid=\"true\"").count(), 2);
        assert!(html.contains("<label for=\"username\">"));
        assert!(html.contains("<label for=\"password\">"));
        assert!(html.contains("<html lang=\"en\">"));
        assert!(!html.contains("demo123"));
        let html = page(None, true);
        assert!(!html.contains("aria-invalid=\"true\""));
        for hint in ["demo123", "inspector123", "admin123"] {
            assert!(html.contains(hint), "demo hint lacks {hint}");
        }
    }

    #[test]
    fn identity_providers_get_a_button_each_and_the_password_form_can_go() {
        let providers = vec![
            ("idp/corp/login".to_string(), "Corp <SSO>".to_string()),
            ("idp/gh/login".to_string(), "GitHub".to_string()),
        ];
        let page = |password: bool| {
            LoginPage {
                css: CSS,
                action: "login",
                client_name: "App",
                redirect_host: "localhost:6274",
                hidden: &[],
                csrf_token: "t",
                username: "",
                error: None,
                demo: true,
                password,
                providers: &providers,
            }
            .render()
            .unwrap()
        };
        let html = page(true);
        assert!(
            html.contains("Continue with Corp &lt;SSO&gt;")
                || html.contains("Continue with Corp &#60;SSO&#62;")
        );
        assert!(html.contains("Continue with GitHub"));
        assert!(html.contains("action=\"idp/gh/login\""));
        assert_eq!(html.matches("<form method=\"post\"").count(), 3);
        assert!(html.contains("type=\"password\""));
        let html = page(false);
        assert_eq!(html.matches("<form method=\"post\"").count(), 2);
        assert!(!html.contains("type=\"password\""));
        assert!(
            !html.contains("demo123"),
            "no password hint without the password form"
        );
    }

    #[test]
    fn focus_is_visible_and_fields_have_a_visible_border() {
        assert!(CSS.contains("input:focus-visible,button:focus-visible{outline:3px solid"));
        // Form fields use the darker `--field` colour (≥ 3:1 against the card).
        assert!(CSS.contains("border:1px solid var(--field)"));
    }

    #[test]
    fn csp_hash_covers_the_stylesheet() {
        assert!(csp().contains("style-src 'sha256-"));
        assert!(csp().contains("frame-ancestors 'none'"));
    }
}
