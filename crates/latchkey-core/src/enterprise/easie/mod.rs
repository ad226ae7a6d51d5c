//! EASIE connections: an organisation enrolls one of its verified email domains with Google
//! Workspace or Microsoft Entra ID, and from then on the domain's members sign in through that
//! provider, checked against the enterprise's tenant (rules in `latchkey-easie`). This module
//! keeps the enrollments ([`connections`]); the upstream sign-in itself, shared with consumer
//! social sign-in, lives in [`crate::enterprise::upstream`].

pub mod connections;

pub use connections::{EasieConnection, EasieOptions};
