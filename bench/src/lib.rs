//! Benchmark support.
//!
//! The library holds the "ceiling" server used as the baseline of every ratio in
//! `docs/benchmarks.md`: a bare actix-web handler that parses a JSON-RPC request and
//! answers a fixed `tools/call` result, optionally after exactly one ES256 JWT
//! verification (`jsonwebtoken` with aws-lc-rs), and nothing else. No session, no
//! logging, no middleware: whatever mcp-server spends on top of it is the price of
//! MCP, sessions and the token cache.

pub mod baseline;
