//! sea-orm entities: the storage shape. Services convert them into the domain types in
//! [`crate::model`], so the rest of Latchkey never depends on column layout.

pub mod api_key;
pub mod audit_event;
pub mod easie_connection;
pub mod email_verification;
pub mod external_identity;
pub mod job_outbox;
pub mod jwt_template;
pub mod membership;
pub mod oauth_assertion_jti;
pub mod oauth_client;
pub mod oauth_client_secret;
pub mod oauth_code;
pub mod oauth_consent;
pub mod oauth_refresh_token;
pub mod org_domain;
pub mod org_invitation;
pub mod org_join_request;
pub mod organisation;
pub mod password_credential;
pub mod password_reset;
pub mod pending_request;
pub mod saml_assertion_id;
pub mod saml_connection;
pub mod saml_sp_key;
pub mod session;
pub mod session_upstream;
pub mod setting;
pub mod sign_in_throttle;
pub mod sign_up_attempt;
pub mod signing_key;
pub mod store_revision;
pub mod upstream_event_id;
pub mod upstream_grant;
pub mod user;
pub mod user_email;
