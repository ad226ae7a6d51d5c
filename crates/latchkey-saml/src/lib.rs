//! The SAML 2.0 service-provider rules of Latchkey: pure functions over XML, keys and time,
//! with no storage and no HTTP. Built on `samael` (with xmlsec) and closing its known gaps
//! (see docs/saml.md): an explicit signature-algorithm allow-list, exact checks of every
//! condition, AES-256 and signed-then-encrypted assertions.
//!
//! - [`response`]: verifying a `<samlp:Response>` from the ACS (the fail-closed heart).
//! - [`decrypt`]: `<saml:EncryptedAssertion>` with AES-128/256 (GCM, CBC) and RSA-OAEP.
//! - [`request`] and [`binding`]: AuthnRequests over HTTP-Redirect and HTTP-POST.
//! - [`logout`]: Single Logout requests and responses both ways.
//! - [`metadata`]: reading IdP metadata and writing SP metadata.
//! - [`keys`]: SP key pairs and certificates.
//! - [`mapping`]: attribute mapping presets (Okta, Entra ID, Google Workspace).

pub mod algorithms;
pub mod binding;
pub mod decrypt;
pub mod error;
pub mod keys;
pub mod logout;
pub mod mapping;
pub mod metadata;
pub mod model;
pub mod post_body;
pub mod request;
pub mod response;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod xml_guard;

pub use error::{Result, SamlError};
pub use model::{NameId, VerifiedAssertion};
