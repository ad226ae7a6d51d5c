//! The two upstream providers, Microsoft tenant IDs and the Microsoft authority. A tenant's
//! issuer is `{authority}/{tid}/v2.0`; comparing it exactly is what stops a token from one
//! tenant being taken for another's, so the authority is normalised once, here.

use std::{fmt, str::FromStr};

use crate::{domain::Domain, refusal::Refusal};

/// The tenant every personal Microsoft account (outlook.com, hotmail.com, …) signs in through.
/// Anyone can create an account there with any address, so it never stands for an enterprise.
pub const CONSUMER_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Microsoft's public cloud; private deployments and tests point elsewhere.
pub const DEFAULT_MICROSOFT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Google's issuer, the default for `LATCHKEY_GOOGLE_ISSUER`.
pub const DEFAULT_GOOGLE_ISSUER: &str = "https://accounts.google.com";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Google,
    Microsoft,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Google, Provider::Microsoft];

    /// The name used in the CLI, in URLs (`/oauth/callback/{provider}`) and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Google => "google",
            Self::Microsoft => "microsoft",
        }
    }

    /// Exact lower-case names only: the name appears in callback URLs, where one spelling per
    /// provider keeps routes and audit records unambiguous.
    pub fn parse(name: &str) -> Result<Self, Refusal> {
        match name {
            "google" => Ok(Self::Google),
            "microsoft" => Ok(Self::Microsoft),
            _ => Err(Refusal::UnknownProvider(name.chars().take(40).collect())),
        }
    }

    pub fn other(self) -> Self {
        match self {
            Self::Google => Self::Microsoft,
            Self::Microsoft => Self::Google,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = Refusal;
    fn from_str(s: &str) -> Result<Self, Refusal> {
        Self::parse(s)
    }
}

/// Lower-cases a GUID (`8-4-4-4-12` hex digits) or returns `None`. Entra object and tenant IDs
/// are GUIDs; anything else in their place is not what Microsoft sends.
pub(crate) fn normalize_guid(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let shape_ok = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    shape_ok.then(|| input.to_ascii_lowercase())
}

/// A Microsoft Entra tenant ID, lower-case (Microsoft prints tenant IDs in lower case in
/// issuers, so the lower-case form is the one that compares equal to `iss`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(input: &str) -> Result<Self, Refusal> {
        normalize_guid(input).map(Self).ok_or(Refusal::InvalidTenantId)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The personal-accounts tenant, which is never an enterprise.
    pub fn is_consumer(&self) -> bool {
        self.0 == CONSUMER_TENANT_ID
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = Refusal;
    fn from_str(s: &str) -> Result<Self, Refusal> {
        Self::parse(s)
    }
}

/// The Microsoft authority (`LATCHKEY_MICROSOFT_AUTHORITY`), without its trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority(String);

impl Authority {
    /// Accepts `http(s)://host[:port][/path]` with at most one trailing slash, which is
    /// dropped: issuers are built by appending `/{tid}/v2.0`, and a doubled slash would never
    /// match. `http` stays allowed for local emulators; the configuration layer decides
    /// whether production may use it.
    pub fn parse(input: &str) -> Result<Self, Refusal> {
        let base = input.strip_suffix('/').unwrap_or(input);
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .ok_or(Refusal::InvalidAuthority("must start with https:// or http://"))?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(Refusal::InvalidAuthority("has no host"));
        }
        if base.ends_with('/') || rest.contains("//") {
            return Err(Refusal::InvalidAuthority("has an empty path segment"));
        }
        if !base.bytes().all(|b| b.is_ascii_graphic()) || base.contains(['?', '#']) {
            return Err(Refusal::InvalidAuthority("has spaces, a query or a fragment"));
        }
        Ok(Self(base.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The issuer of a tenant's v2.0 tokens: `{authority}/{tid}/v2.0`.
    pub fn issuer_for(&self, tid: &TenantId) -> String {
        format!("{}/{}/v2.0", self.0, tid.as_str())
    }

    /// Where a domain's tenant publishes its OpenID configuration (see [`crate::discovery`]).
    pub fn discovery_url(&self, domain: &Domain) -> String {
        format!("{}/{}/v2.0/.well-known/openid-configuration", self.0, domain.as_str())
    }
}

impl Default for Authority {
    fn default() -> Self {
        Self(DEFAULT_MICROSOFT_AUTHORITY.to_owned())
    }
}

/// `{authority}/{tid}/v2.0` from the configured authority string (trailing slash tolerated).
pub fn microsoft_issuer(authority: &str, tid: &TenantId) -> Result<String, Refusal> {
    Ok(Authority::parse(authority)?.issuer_for(tid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_print_and_parse() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()).unwrap(), p);
            assert_eq!(p.to_string().parse::<Provider>().unwrap(), p);
            assert_ne!(p.other(), p);
        }
        for bad in ["", "Google", "MICROSOFT", "google ", "azure", "gmail"] {
            assert_eq!(Provider::parse(bad).unwrap_err().reason(), "unknown_provider", "{bad}");
        }
    }

    #[test]
    fn tenant_ids_are_lowercase_guids() {
        let t = TenantId::parse("72F988BF-86F1-41AF-91AB-2D7CD011DB47").unwrap();
        assert_eq!(t.as_str(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert!(!t.is_consumer());
        assert!(TenantId::parse(CONSUMER_TENANT_ID).unwrap().is_consumer());
        assert!(TenantId::parse("9188040D-6C67-4C5B-B112-36A304B66DAD").unwrap().is_consumer());
        for bad in [
            "",
            "common",
            "organizations",
            "consumers",
            "contoso.onmicrosoft.com",
            "72f988bf86f141af91ab2d7cd011db47",
            "{72f988bf-86f1-41af-91ab-2d7cd011db47}",
            "72f988bf-86f1-41af-91ab-2d7cd011db4g",
            "72f988bf-86f1-41af-91ab-2d7cd011db47 ",
            "72f988bf-86f1-41af-91ab_2d7cd011db47",
        ] {
            assert_eq!(TenantId::parse(bad).unwrap_err().reason(), "invalid_tenant_id", "{bad}");
        }
    }

    #[test]
    fn issuers_are_built_from_the_authority() {
        let tid = TenantId::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap();
        let want = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
        assert_eq!(microsoft_issuer("https://login.microsoftonline.com", &tid).unwrap(), want);
        assert_eq!(microsoft_issuer("https://login.microsoftonline.com/", &tid).unwrap(), want);
        assert_eq!(Authority::default().issuer_for(&tid), want);
        let local = Authority::parse("http://127.0.0.1:8089/ms/").unwrap();
        assert_eq!(local.as_str(), "http://127.0.0.1:8089/ms");
        let domain = Domain::parse("contoso.com").unwrap();
        assert_eq!(
            local.discovery_url(&domain),
            "http://127.0.0.1:8089/ms/contoso.com/v2.0/.well-known/openid-configuration"
        );
    }

    #[test]
    fn unusable_authorities_are_refused() {
        for bad in [
            "",
            "login.microsoftonline.com",
            "ftp://login.microsoftonline.com",
            "https://",
            "https:///x",
            "https://login.microsoftonline.com//",
            "https://login.microsoftonline.com//x",
            "https://login.microsoftonline.com?x=1",
            "https://login.microsoftonline.com#x",
            "https://login.microsoft online.com",
        ] {
            assert_eq!(Authority::parse(bad).unwrap_err().reason(), "invalid_authority", "{bad}");
        }
    }
}
