//! The mcp-server integration tests (one binary; add a `mod` line per module).
mod audit;
mod direct;
mod gateway;
mod gateway_direct;
mod healthcheck;
mod mcp;
mod mcp_admin;
mod outage;
mod replicas;
mod support;
mod verifier;
