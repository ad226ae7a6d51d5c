//! (Migrations are schema definitions: one long `up` reads better than pieces.)
#![allow(clippy::too_many_lines)]
//! Schema migrations for Latchkey. Each migration must run unchanged on SQLite and PostgreSQL,
//! so columns use portable types: text ids, BIGINT unix-second timestamps, JSON kept as text.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_identity_store;
mod m20261128_000002_mail_outbox;
mod m20261128_000003_org_domains;
mod m20261128_000004_auth_flows;
mod m20261128_000005_oidc;
mod m20261128_000006_backchannel_logout;
mod m20261128_000007_jwt_templates;
mod m20261128_000008_client_audiences_templates;
mod m20261128_000009_session_expiry_sweep;
mod m20261128_000010_refresh_token_indexes;
mod m20261206_000011_one_active_signing_key;
mod m20261206_000012_job_outbox;
mod m20261206_000014_sign_in_seam;
mod m20261206_000019_email_verifications;
mod m20261206_000020_saml_connections;
mod m20261206_000021_easie;
mod m20261206_000022_api_keys;
mod m20261206_000023_audit_request_ids;
mod m20261206_000024_admin_console;
mod m20261206_000025_admin_listing_indexes;
mod m20261206_000026_token_audiences_and_revocation;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_identity_store::Migration),
            Box::new(m20261128_000002_mail_outbox::Migration),
            Box::new(m20261128_000003_org_domains::Migration),
            Box::new(m20261128_000004_auth_flows::Migration),
            Box::new(m20261128_000005_oidc::Migration),
            Box::new(m20261128_000006_backchannel_logout::Migration),
            Box::new(m20261128_000007_jwt_templates::Migration),
            Box::new(m20261128_000008_client_audiences_templates::Migration),
            Box::new(m20261128_000009_session_expiry_sweep::Migration),
            Box::new(m20261128_000010_refresh_token_indexes::Migration),
            Box::new(m20261206_000011_one_active_signing_key::Migration),
            Box::new(m20261206_000012_job_outbox::Migration),
            Box::new(m20261206_000014_sign_in_seam::Migration),
            Box::new(m20261206_000019_email_verifications::Migration),
            Box::new(m20261206_000020_saml_connections::Migration),
            Box::new(m20261206_000021_easie::Migration),
            Box::new(m20261206_000022_api_keys::Migration),
            Box::new(m20261206_000023_audit_request_ids::Migration),
            Box::new(m20261206_000024_admin_console::Migration),
            Box::new(m20261206_000025_admin_listing_indexes::Migration),
            Box::new(m20261206_000026_token_audiences_and_revocation::Migration),
        ]
    }
}
