//! Organisations: memberships, invitations, verified domains and enrollment through them.

pub mod access;
pub mod consumer_domains;
pub mod domains;
pub mod enrollment;
pub mod invitations;
pub mod model;
pub mod orgs;
