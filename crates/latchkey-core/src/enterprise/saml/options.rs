//! A SAML connection's options, with safe defaults: signed requests, SHA-256 or better, one
//! minute of clock skew, no IdP-initiated sign-in.

use std::collections::BTreeMap;

use latchkey_saml::mapping::{AttributeMapping, Preset};
use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    infra::email::normalize_email,
    tenancy::{access::ROLE_ADMIN, orgs::validate_role},
};

/// Most clock skew a connection may allow between us and its IdP.
pub const MAX_SKEW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionOptions {
    /// Sign AuthnRequests (RSA-SHA256).
    pub sign_requests: bool,
    /// Accept RSA-SHA1 signatures and SHA-1 digests (legacy IdPs only; flagged as a warning).
    pub allow_sha1: bool,
    /// Refuse assertions that are not encrypted to us.
    pub require_encryption: bool,
    /// The NameID format asked for in AuthnRequests (none: the IdP's choice).
    pub name_id_format: Option<String>,
    pub skew_secs: i64,
    /// Accept unsolicited (IdP-initiated) responses.
    pub allow_idp_initiated: bool,
    /// Where IdP-initiated sign-ins land: a path on this server, never RelayState.
    pub idp_initiated_landing: String,
    pub preset: Option<Preset>,
    pub mapping: AttributeMapping,
    /// IdP group → organisation role. When set, the IdP decides the role on every sign-in.
    pub group_roles: BTreeMap<String, String>,
    /// The role of members whose groups map to none.
    pub default_role: String,
    /// Addresses on the covered domains that may still sign in with a password (break-glass
    /// administrators); every use is audited.
    pub bypass: Vec<String>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            sign_requests: true,
            allow_sha1: false,
            require_encryption: false,
            name_id_format: None,
            skew_secs: 60,
            allow_idp_initiated: false,
            idp_initiated_landing: "/account".into(),
            preset: None,
            mapping: AttributeMapping::default(),
            group_roles: BTreeMap::new(),
            default_role: crate::tenancy::access::ROLE_MEMBER.into(),
            bypass: Vec::new(),
        }
    }
}

impl ConnectionOptions {
    /// Options starting from a preset's attribute mapping.
    pub fn with_preset(preset: Option<Preset>) -> Self {
        let mut o = Self { preset, ..Self::default() };
        if let Some(p) = preset {
            o.mapping = AttributeMapping::preset(p);
        }
        o
    }

    /// Checks every option and normalises the bypass addresses.
    pub fn validate(mut self) -> Result<Self> {
        if !(0..=MAX_SKEW_SECS).contains(&self.skew_secs) {
            return Err(Error::invalid("skew_secs", format!("must be 0 to {MAX_SKEW_SECS}")));
        }
        if !is_local_path(&self.idp_initiated_landing) {
            return Err(Error::invalid(
                "idp_initiated_landing",
                "must be a path on this server, such as /account",
            ));
        }
        validate_role(&self.default_role)?;
        for role in self.group_roles.values() {
            validate_role(role)?;
        }
        self.bypass = self.bypass.iter().map(|a| normalize_email(a)).collect::<Result<_>>()?;
        self.bypass.sort();
        self.bypass.dedup();
        Ok(self)
    }

    /// Whether the IdP decides members' roles (a group mapping is configured).
    pub fn roles_from_groups(&self) -> bool {
        !self.group_roles.is_empty()
    }

    /// The role the IdP's groups give: `admin` if any group maps to it, else the first mapped
    /// role in group order, else the default role.
    pub fn role_for(&self, groups: &[String]) -> String {
        let mapped: Vec<&String> = groups.iter().filter_map(|g| self.group_roles.get(g)).collect();
        if mapped.iter().any(|r| r.as_str() == ROLE_ADMIN) {
            return ROLE_ADMIN.into();
        }
        mapped.first().map_or_else(|| self.default_role.clone(), |r| (*r).clone())
    }

    /// Warnings an operator should see in `connections show`.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.allow_sha1 {
            w.push("SHA-1 signatures are accepted (allow_sha1): ask the IdP for SHA-256".into());
        }
        if !self.sign_requests {
            w.push("AuthnRequests are not signed".into());
        }
        w
    }
}

/// A path on this server: starts with one `/`, no scheme, no backslash, no control characters.
pub fn is_local_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.starts_with("//")
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
        && p.len() <= 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_validated() {
        let o = ConnectionOptions::default().validate().unwrap();
        assert!(o.sign_requests && !o.allow_sha1 && !o.allow_idp_initiated);
        assert_eq!(o.skew_secs, 60);
        let too_lax = ConnectionOptions { skew_secs: 301, ..ConnectionOptions::default() };
        assert!(too_lax.validate().is_err());
        for landing in ["https://evil.example/", "//evil.example", "/\\evil", "account"] {
            let o =
                ConnectionOptions { idp_initiated_landing: landing.into(), ..Default::default() };
            assert!(o.validate().is_err(), "{landing}");
        }
    }

    #[test]
    fn groups_map_to_the_strongest_role() {
        let mut o = ConnectionOptions::default();
        o.group_roles.insert("eng".into(), "member".into());
        o.group_roles.insert("it-admins".into(), "admin".into());
        assert_eq!(o.role_for(&["eng".into(), "it-admins".into()]), "admin");
        assert_eq!(o.role_for(&["eng".into()]), "member");
        assert_eq!(o.role_for(&["sales".into()]), "member");
        assert!(o.roles_from_groups());
    }
}
