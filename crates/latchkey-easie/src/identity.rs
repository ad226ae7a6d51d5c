//! What a successful check hands to the core: the key the upstream identity is stored under,
//! the address, and profile fields for just-in-time provisioning. Identities are keyed by
//! (`iss`, `sub`) for Google and (`tid`, `oid`) for Microsoft, never by email: an address can
//! be reassigned or, at Microsoft, set to anything by a tenant's administrator.

use crate::{
    domain::{Domain, Email},
    provider::{Provider, TenantId},
    recheck::IdentitySnapshot,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityKey {
    Google { iss: String, sub: String },
    Microsoft { tid: TenantId, oid: String },
}

impl IdentityKey {
    pub fn provider(&self) -> Provider {
        match self {
            Self::Google { .. } => Provider::Google,
            Self::Microsoft { .. } => Provider::Microsoft,
        }
    }
}

/// Display fields, taken as sent; they decide nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
}

/// A member of an enrolled organisation, signed in through the organisation's own tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnterpriseIdentity {
    pub key: IdentityKey,
    /// In the enrolled domain (checked), normalised.
    pub email: Email,
    /// The enrolled domain the sign-in was checked against.
    pub domain: Domain,
    /// Whether the provider itself vouches for the address (Google `email_verified`,
    /// Microsoft `xms_edov`), exactly `true`. Google enterprise sign-ins always have it;
    /// for Microsoft the pinned tenant vouches for membership, not for the mailbox, so the
    /// core should only link to an existing account by address when this is true.
    pub email_verified: bool,
    pub profile: Profile,
    /// What the deprovisioning recheck compares later refreshes against.
    pub snapshot: IdentitySnapshot,
}

/// A consumer ("Continue with Google/Microsoft") sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocialIdentity {
    pub key: IdentityKey,
    /// The address to show or prefill, if the token carried a valid one; never for linking.
    pub email: Option<Email>,
    /// The address the provider vouches for, the only one an existing account may be linked
    /// by (Google `email_verified: true`, Microsoft `xms_edov: true`).
    pub verified_email: Option<Email>,
    pub profile: Profile,
}
