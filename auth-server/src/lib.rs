//! A standalone OAuth 2.1 authorization server for MCP clients: RFC 8414 metadata,
//! dynamic registration (RFC 7591/7592), Client ID Metadata Documents, PKCE-only
//! authorization code flow with login and consent pages, rotating refresh tokens,
//! RFC 9068 JWT access tokens, revocation, introspection, userinfo and an admin API.

pub mod app;
pub mod cimd;
pub mod cli;
pub mod domain;
pub mod error;
pub mod http;
pub mod ratelimit;
pub mod service;
pub mod settings;
pub mod storage;

pub use app::Application;
pub use settings::Settings;
