//! Running Latchkey: what the admin API, the console and the CLI share beyond the domain
//! services they call (API keys and the user directory so far). It comes last in the layering: it may use every
//! domain, and none uses it.

pub mod api_keys;
pub mod directory;

pub use api_keys::{ApiKey, ApiKeyPrincipal, ApiKeyService, CreatedApiKey, NewApiKey};
pub use directory::{Directory, Page, UserQuery};
