use std::collections::HashSet;

use latchkey_core::Latchkey;

use crate::metrics::Metrics;

pub struct AppState {
    pub core: Latchkey,
    pub metrics: Metrics,
    /// Origins allowed to call the session API with cookies: our own plus configured ones.
    pub allowed_origins: HashSet<String>,
    pub public_origin: String,
    pub cookie_name: &'static str,
    /// Large SAML messages read and verified at once (see `saml::max_saml_in_flight`).
    pub saml_permits: std::sync::Arc<tokio::sync::Semaphore>,
}

/// `__Host-` binds the cookie to our exact origin; browsers accept it only with `Secure`,
/// so plain-http loopback set-ups use the bare name.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-latchkey_session" } else { "latchkey_session" }
}

impl AppState {
    pub fn new(core: Latchkey) -> Self {
        let public_origin = core.settings.public_origin();
        let mut allowed_origins: HashSet<String> =
            core.settings.allowed_origins.iter().cloned().collect();
        allowed_origins.insert(public_origin.clone());
        let cookie_name = session_cookie_name(core.settings.secure_cookies());
        let saml_permits = std::sync::Arc::new(tokio::sync::Semaphore::new(
            crate::saml::max_saml_in_flight(core.settings.workers),
        ));
        Self {
            core,
            metrics: Metrics::default(),
            allowed_origins,
            public_origin,
            cookie_name,
            saml_permits,
        }
    }
}
