//! The mcp-server integration tests (one binary; add a `mod` line per module).
mod support;
mod verifier;
mod mcp;
mod mcp_admin;
