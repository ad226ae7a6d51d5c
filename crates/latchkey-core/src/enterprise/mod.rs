//! Enterprise connections: an organisation's own identity provider decides who of its members
//! gets in. A connection covers the organisation's verified domains: identifier-first sign-in
//! sends those addresses to it (through [`crate::sign_in::routing`]), its answers are verified
//! by the protocol crate and then finish through the one sign-in completion, so a member ends
//! up with an ordinary Latchkey session.
//!
//! - [`saml`]: SAML 2.0, Latchkey as the service provider (rules in `latchkey-saml`).

pub mod saml;
