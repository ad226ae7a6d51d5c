//! Latchkey's integration tests: one binary (each extra one costs minutes to link). Most tests
//! start the real app in-process on a free port and run once per storage backend: SQLite in a
//! temporary directory and PostgreSQL from `LATCHKEY_TEST_POSTGRES_URL` (set by scripts/test).
//! Tests of start-up and the CLI run the real `latchkey` binary.

// Scenarios read better whole, so the production limit on function length does not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::too_many_lines)]

mod support;

mod admin_api;
mod backchannel;
mod chain_app;
mod cli;
mod console;
mod e2e;
mod easie_connections;
mod first_start;
mod http_hygiene;
mod jobs;
mod jwt_templates;
mod keys;
mod mail;
mod oidc;
mod oidc_checks;
mod oidc_claims;
mod orgs;
pub mod pages;
mod resource_server;
mod saml;
mod sdk_js;
mod session_tokens;
mod sign_in;
mod upstream;
mod upstream_abuse;
mod upstream_idp;
mod upstream_risc;
mod upstream_support;
mod upstream_tokens;
mod verify_sdk;
