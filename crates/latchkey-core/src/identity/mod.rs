//! People and their sessions: users and their addresses, passwords, server-side sessions, the
//! session tokens minted from them, and the activity that keeps them alive.

pub mod activity;
pub mod external;
pub mod method;
pub mod mint_gate;
pub mod model;
pub mod passwords;
pub mod session_tokens;
pub mod sessions;
pub mod subject;
pub mod users;
