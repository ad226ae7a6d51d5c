//! EASIE connections: an organisation enrolls one of its verified email domains with Google
//! Workspace or Microsoft Entra ID, and from then on the domain's members sign in through that
//! provider, checked against the enterprise's tenant (rules in `latchkey-easie`). This module
//! keeps the enrollments and their management ([`connections`], [`EasieService`]), pins a
//! Microsoft tenant at enrollment ([`tenant`]) and routes enrolled addresses ([`registry`]); the
//! upstream sign-in itself, shared with consumer social sign-in, lives in
//! [`crate::enterprise::upstream`].

pub mod connections;
pub mod registry;
pub mod tenant;

pub use connections::{EasieConnection, EasieConnectionView, EasieOptions, NewEasieConnection};
pub use latchkey_easie::Provider;

use latchkey_easie::Authority;

use crate::{Error, Result, Settings, infra::store::Store};

/// Manages EASIE connections. Every operation checks the caller itself (organisation admins
/// or the operator) and is audited.
#[derive(Clone)]
pub struct EasieService {
    store: Store,
    public_url: String,
    google_configured: bool,
    microsoft_configured: bool,
    authority: Authority,
    tenants: tenant::TenantResolver,
}

impl EasieService {
    pub fn new(store: Store, settings: &Settings) -> Result<Self> {
        let upstream = &settings.upstream;
        // The configuration layer checked the authority already; a value it let through that
        // this crate refuses is a fault, not something to work around.
        let authority = Authority::parse(&upstream.microsoft_authority)
            .map_err(|e| Error::Internal(format!("LATCHKEY_MICROSOFT_AUTHORITY: {e}")))?;
        Ok(Self {
            store,
            public_url: settings.public_url.clone(),
            google_configured: upstream.google.is_some(),
            microsoft_configured: upstream.microsoft.is_some(),
            tenants: tenant::TenantResolver::new(authority.clone())?,
            authority,
        })
    }

    /// Refuses a provider the operator has not configured, naming the settings to set.
    pub fn require_configured(&self, provider: Provider) -> Result<()> {
        let (configured, setting) = match provider {
            Provider::Google => (self.google_configured, "LATCHKEY_GOOGLE"),
            Provider::Microsoft => (self.microsoft_configured, "LATCHKEY_MICROSOFT"),
        };
        if configured {
            return Ok(());
        }
        Err(Error::invalid(
            "provider",
            format!(
                "{provider} sign-in is not configured on this instance: set {setting}_CLIENT_ID \
                 and {setting}_CLIENT_SECRET first"
            ),
        ))
    }

    /// Where the browser starts an enrolled domain's sign-in (the route the web crate serves).
    pub fn login_path(connection_id: &str) -> String {
        format!("/easie/{connection_id}/login")
    }

    /// The Microsoft authority tenants are pinned under.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}
