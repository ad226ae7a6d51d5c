//! What every domain stands on: configuration, the store and its revision, the clock, crypto,
//! identifiers, audit events, signing keys, the job outbox, outgoing mail and the entities.
//! Nothing here knows about users, organisations or OAuth.

pub mod audit;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod email;
pub mod entity;
pub mod error;
pub mod ids;
pub mod inline_sqlite;
pub mod jobs;
pub mod jose;
pub mod keys;
pub mod mail;
pub mod revision;
pub mod store;
