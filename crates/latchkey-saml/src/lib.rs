//! SAML 2.0 service provider for enterprise identity providers (Okta, Entra ID, Google
//! Workspace). Empty until the SAML work lands; the crate exists so the workspace layout and
//! the web crate's dependency on it are already in place.
