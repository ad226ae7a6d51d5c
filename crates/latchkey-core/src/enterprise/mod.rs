//! Enterprise connections: an organisation's own identity provider decides who of its members
//! gets in. A connection covers the organisation's verified domains: identifier-first sign-in
//! sends those addresses to it (through [`crate::sign_in::routing`]), its answers are verified
//! by the protocol crate and then finish through the one sign-in completion, so a member ends
//! up with an ordinary Latchkey session.
//!
//! - [`saml`]: SAML 2.0, Latchkey as the service provider (rules in `latchkey-saml`).
//! - [`easie`]: EASIE enrollments of a domain with Google Workspace or Microsoft Entra ID.
//! - [`upstream`]: Google and Microsoft as upstream OpenID Connect providers, for EASIE and
//!   for consumer social sign-in (rules in `latchkey-easie`), and the upstream token vault.

pub mod easie;
pub mod saml;
pub mod upstream;
