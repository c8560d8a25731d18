//! Integration tests: the real `Application` on 127.0.0.1:0 with a temporary SQLite
//! file (with `AUTH_TEST_BACKEND=postgres`: a PostgreSQL schema of its own),
//! driven over HTTP like a browser plus an OAuth client would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod cimd;
mod config_clients;
mod crash;
mod federation;
mod flow;
mod hardening;
mod healthcheck;
mod helpers;
mod keys_at_rest;
mod logging;
mod login_throttling;
mod negative;
mod persistence;
mod postgres;
mod refresh;
mod registration;
mod revocation_feed;
mod security;
mod shared_limits;
mod storage;
mod switch_account;
