//! How a session was authenticated. Every session records its method, typed; the `amr` and
//! `acr` claims that relying parties see are derived from it here and nowhere else.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An upstream OpenID Connect provider Latchkey signs people in through (Google, Microsoft).
pub use latchkey_easie::Provider as Upstream;

/// The `acr` of sessions signed in through an enterprise SAML connection.
pub const ACR_ENTERPRISE_SAML: &str = "urn:latchkey:acr:enterprise-saml";

/// The authentication behind a session. Serialised as its stored form (see
/// [`AuthMethod::to_stored`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A password checked by Latchkey (sign-in, or sign-up confirmed by an emailed code).
    Password,
    /// A SAML assertion from an organisation's enterprise connection.
    Saml { connection_id: String },
    /// An upstream OpenID Connect sign-in: an organisation's EASIE connection, or consumer
    /// social sign-in when there is no connection.
    UpstreamOidc { upstream: Upstream, connection_id: Option<String> },
    /// Created by an operator (`latchkey sessions create`) rather than by signing in.
    Operator,
}

impl AuthMethod {
    /// RFC 8176 authentication method references.
    pub fn amr(&self) -> Vec<String> {
        let values: &[&str] = match self {
            Self::Password => &["pwd"],
            // Federated: the identity provider authenticated the user, by means it chose.
            Self::Saml { .. } | Self::UpstreamOidc { .. } => &["fed"],
            Self::Operator => &[],
        };
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    /// The authentication context class, when Latchkey can vouch for one.
    pub fn acr(&self) -> Option<&'static str> {
        match self {
            // The organisation's own IdP authenticated the user: relying parties that require
            // enterprise sign-in ask for (and check) this class.
            Self::Saml { .. } => Some(ACR_ENTERPRISE_SAML),
            Self::Password | Self::UpstreamOidc { .. } | Self::Operator => None,
        }
    }

    /// The stored form: `password`, `saml:<connection>`, `oidc:<upstream>[:<connection>]`,
    /// `operator`. Readable in the database and the audit log.
    pub fn to_stored(&self) -> String {
        self.to_string()
    }

    /// Reads the stored form. A value this version does not know reads as [`Self::Operator`],
    /// which claims no authentication method at all.
    pub fn from_stored(s: &str) -> Self {
        let mut parts = s.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("password"), None, None) => Self::Password,
            (Some("saml"), Some(id), None) if !id.is_empty() => {
                Self::Saml { connection_id: id.to_owned() }
            }
            (Some("oidc"), Some(upstream), connection) => match Upstream::parse(upstream) {
                Ok(upstream) => Self::UpstreamOidc {
                    upstream,
                    connection_id: connection.filter(|c| !c.is_empty()).map(str::to_owned),
                },
                Err(_) => Self::Operator,
            },
            _ => Self::Operator,
        }
    }
}

impl Serialize for AuthMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuthMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_stored(&String::deserialize(d)?))
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password => f.write_str("password"),
            Self::Saml { connection_id } => write!(f, "saml:{connection_id}"),
            Self::UpstreamOidc { upstream, connection_id: None } => {
                write!(f, "oidc:{}", upstream.as_str())
            }
            Self::UpstreamOidc { upstream, connection_id: Some(c) } => {
                write!(f, "oidc:{}:{c}", upstream.as_str())
            }
            Self::Operator => f.write_str("operator"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_round_trip_through_their_stored_form() {
        for m in [
            AuthMethod::Password,
            AuthMethod::Operator,
            AuthMethod::Saml { connection_id: "con_01".into() },
            AuthMethod::UpstreamOidc { upstream: Upstream::Google, connection_id: None },
            AuthMethod::UpstreamOidc {
                upstream: Upstream::Microsoft,
                connection_id: Some("con_02".into()),
            },
        ] {
            assert_eq!(AuthMethod::from_stored(&m.to_stored()), m);
        }
    }

    #[test]
    fn unknown_stored_values_claim_nothing() {
        for s in ["", "test", "cli", "saml:", "oidc:yahoo", "password:x"] {
            let m = AuthMethod::from_stored(s);
            assert_eq!(m, AuthMethod::Operator, "{s}");
            assert!(m.amr().is_empty());
        }
        assert_eq!(AuthMethod::Password.amr(), vec!["pwd"]);
        assert_eq!(AuthMethod::Saml { connection_id: "c".into() }.amr(), vec!["fed"]);
    }
}
