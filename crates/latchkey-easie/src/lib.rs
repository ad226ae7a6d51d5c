//! EASIE single sign-on: enterprises enrolled by email domain sign in through Google or
//! Microsoft OIDC. Empty until the EASIE work lands; the crate exists so the workspace layout
//! and the web crate's dependency on it are already in place.
