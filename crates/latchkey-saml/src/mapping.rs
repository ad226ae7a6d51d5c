//! Attribute mapping: which assertion attributes carry the email, names and groups, with
//! presets for Okta, Microsoft Entra ID and Google Workspace, and the choice of the account key
//! (the NameID, or a configured stable attribute; never a transient NameID).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{NAMEID_EMAIL, NameId, VerifiedAssertion};
use crate::{Result, SamlError};

/// Attribute names tried in order for each field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeMapping {
    pub email: Vec<String>,
    pub given_name: Vec<String>,
    pub family_name: Vec<String>,
    pub display_name: Vec<String>,
    pub groups: Vec<String>,
    /// Attribute holding a stable id when the NameID is transient. When set it is the account
    /// key, whatever the NameID.
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Okta,
    Entra,
    Google,
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "okta" => Ok(Self::Okta),
            "entra" => Ok(Self::Entra),
            "google" => Ok(Self::Google),
            other => Err(format!("unknown preset {other:?} (okta, entra or google)")),
        }
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

const ENTRA_EMAIL: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress";
/// Entra's `name` claim carries the user principal name.
const ENTRA_UPN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";
const ENTRA_GIVEN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname";
const ENTRA_SURNAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname";
const ENTRA_DISPLAY: &str = "http://schemas.microsoft.com/identity/claims/displayname";
const ENTRA_GROUPS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups";

impl Default for AttributeMapping {
    /// Common LDAP-style names and their OIDs (eduPerson / SAML2int attribute profile).
    fn default() -> Self {
        Self {
            email: names(&["email", "mail", "emailAddress", "urn:oid:0.9.2342.19200300.100.1.3"]),
            given_name: names(&["givenName", "urn:oid:2.5.4.42"]),
            family_name: names(&["sn", "surname", "urn:oid:2.5.4.4"]),
            display_name: names(&["displayName", "urn:oid:2.16.840.1.113730.3.1.241"]),
            // isMemberOf is eduPerson's group attribute, sent by its OID under SAML2int.
            groups: names(&[
                "groups",
                "memberOf",
                "isMemberOf",
                "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
            ]),
            subject: None,
        }
    }
}

impl AttributeMapping {
    pub fn preset(p: Preset) -> Self {
        match p {
            Preset::Okta => Self {
                email: names(&["email"]),
                given_name: names(&["firstName"]),
                family_name: names(&["lastName"]),
                display_name: names(&["displayName"]),
                groups: names(&["groups"]),
                subject: None,
            },
            Preset::Entra => Self {
                // The UPN is the fallback when no mail attribute is released.
                email: names(&[ENTRA_EMAIL, ENTRA_UPN]),
                given_name: names(&[ENTRA_GIVEN]),
                family_name: names(&[ENTRA_SURNAME]),
                display_name: names(&[ENTRA_DISPLAY]),
                groups: names(&[ENTRA_GROUPS]),
                subject: None,
            },
            // Google's NameID is the primary email by default; attribute names are whatever
            // the administrator typed, these being the usual ones.
            Preset::Google => Self {
                email: names(&["email"]),
                given_name: names(&["firstName"]),
                family_name: names(&["lastName"]),
                display_name: Vec::new(),
                groups: names(&["groups"]),
                subject: None,
            },
        }
    }
}

/// What the service layer needs from a verified assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedIdentity {
    /// The account key at this connection: the configured subject attribute, else the NameID.
    pub subject: String,
    pub name_id: Option<NameId>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
}

/// The first non-empty (trimmed) value among the attributes named, in order.
fn first_value(a: &VerifiedAssertion, names: &[String]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| a.attributes.get(n))
        .flatten()
        .map(|v| v.trim())
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

fn subject(a: &VerifiedAssertion, m: &AttributeMapping) -> Result<String> {
    if let Some(attr) = &m.subject {
        let values: Vec<&str> = a
            .attributes
            .get(attr)
            .map(|vs| vs.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).collect())
            .unwrap_or_default();
        return match values.as_slice() {
            [one] => Ok((*one).to_string()),
            [] => Err(SamlError::NoSubject(format!("attribute {attr:?} is missing"))),
            _ => Err(SamlError::NoSubject(format!("attribute {attr:?} has several values"))),
        };
    }
    let name_id = a.name_id.as_ref().ok_or_else(|| SamlError::NoSubject("no NameID".into()))?;
    if name_id.is_transient() {
        return Err(SamlError::NoSubject(
            "the NameID is transient and no subject attribute is configured".into(),
        ));
    }
    if name_id.value.trim().is_empty() {
        return Err(SamlError::NoSubject("empty NameID".into()));
    }
    Ok(name_id.value.clone())
}

pub fn map_identity(a: &VerifiedAssertion, m: &AttributeMapping) -> Result<MappedIdentity> {
    let subject = subject(a, m)?;
    let email = first_value(a, &m.email).or_else(|| {
        a.name_id
            .as_ref()
            .filter(|n| n.format.as_deref() == Some(NAMEID_EMAIL))
            .map(|n| n.value.trim().to_string())
            .filter(|v| !v.is_empty())
    });
    // Groups come from the first listed attribute that carries any.
    let mut groups: Vec<String> = Vec::new();
    if let Some(values) =
        m.groups.iter().filter_map(|n| a.attributes.get(n)).find(|v| !v.is_empty())
    {
        for g in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            if !groups.iter().any(|x| x == g) {
                groups.push(g.to_string());
            }
        }
    }
    Ok(MappedIdentity {
        subject,
        name_id: a.name_id.clone(),
        email,
        given_name: first_value(a, &m.given_name),
        family_name: first_value(a, &m.family_name),
        display_name: first_value(a, &m.display_name),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{NAMEID_PERSISTENT, NAMEID_TRANSIENT};

    fn assertion(name_id: Option<NameId>, attrs: &[(&str, &[&str])]) -> VerifiedAssertion {
        VerifiedAssertion {
            response_id: "_r".into(),
            assertion_id: "_a".into(),
            issuer: "https://idp.example".into(),
            name_id,
            session_index: None,
            in_response_to: None,
            expires_at: 0,
            authn_instant: None,
            authn_context_class: None,
            attributes: attrs
                .iter()
                .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
                .collect::<BTreeMap<_, _>>(),
            encrypted: false,
        }
    }

    fn nid(value: &str, format: &str) -> Option<NameId> {
        Some(NameId { value: value.into(), format: Some(format.into()) })
    }

    #[test]
    fn okta_preset() {
        let a = assertion(
            nid("00u1abcd", NAMEID_PERSISTENT),
            &[
                ("email", &[" Alice@Corp.Example "]),
                ("firstName", &["Alice"]),
                ("lastName", &["Liddell"]),
                ("displayName", &["Alice L."]),
                ("groups", &["admins", "staff", "admins", " "]),
            ],
        );
        let m = map_identity(&a, &AttributeMapping::preset(Preset::Okta)).unwrap();
        assert_eq!(m.subject, "00u1abcd");
        assert_eq!(m.email.as_deref(), Some("Alice@Corp.Example"));
        assert_eq!(m.given_name.as_deref(), Some("Alice"));
        assert_eq!(m.family_name.as_deref(), Some("Liddell"));
        assert_eq!(m.display_name.as_deref(), Some("Alice L."));
        assert_eq!(m.groups, ["admins", "staff"]);
        assert_eq!(m.name_id, a.name_id);
    }

    #[test]
    fn entra_preset_with_upn_fallback() {
        let a = assertion(
            nid("kX3o9-pairwise", NAMEID_PERSISTENT),
            &[
                (ENTRA_UPN, &["alice@corp.example"]),
                (ENTRA_GIVEN, &["Alice"]),
                (ENTRA_SURNAME, &["Liddell"]),
                (ENTRA_DISPLAY, &["Alice Liddell"]),
                (ENTRA_GROUPS, &["0b6c7f2e-1111-2222-3333-444455556666"]),
            ],
        );
        let m = map_identity(&a, &AttributeMapping::preset(Preset::Entra)).unwrap();
        assert_eq!(m.email.as_deref(), Some("alice@corp.example"));
        assert_eq!(m.display_name.as_deref(), Some("Alice Liddell"));
        assert_eq!(m.groups.len(), 1);
        // The mail claim wins over the UPN.
        let mut both = a.clone();
        both.attributes.insert(ENTRA_EMAIL.into(), vec!["alice.l@corp.example".into()]);
        let m = map_identity(&both, &AttributeMapping::preset(Preset::Entra)).unwrap();
        assert_eq!(m.email.as_deref(), Some("alice.l@corp.example"));
    }

    #[test]
    fn google_preset_takes_email_from_name_id() {
        let a = assertion(nid("alice@corp.example", NAMEID_EMAIL), &[]);
        let m = map_identity(&a, &AttributeMapping::preset(Preset::Google)).unwrap();
        assert_eq!(m.subject, "alice@corp.example");
        assert_eq!(m.email.as_deref(), Some("alice@corp.example"));
        assert_eq!(m.given_name, None);
        assert!(m.groups.is_empty());
        // A persistent NameID is never taken for an email.
        let a = assertion(nid("alice@corp.example", NAMEID_PERSISTENT), &[]);
        assert_eq!(map_identity(&a, &AttributeMapping::default()).unwrap().email, None);
    }

    #[test]
    fn default_mapping_uses_oids_and_order() {
        let a = assertion(
            nid("u1", NAMEID_PERSISTENT),
            &[
                ("urn:oid:0.9.2342.19200300.100.1.3", &["oid@corp.example"]),
                ("mail", &["", "mail@corp.example"]),
                ("urn:oid:2.5.4.42", &["Given"]),
                ("surname", &["Sur"]),
                ("urn:oid:2.16.840.1.113730.3.1.241", &["Display"]),
                ("memberOf", &["cn=a"]),
            ],
        );
        let m = map_identity(&a, &AttributeMapping::default()).unwrap();
        // "mail" is listed before the OID; its first non-empty value is used.
        assert_eq!(m.email.as_deref(), Some("mail@corp.example"));
        assert_eq!(m.given_name.as_deref(), Some("Given"));
        assert_eq!(m.family_name.as_deref(), Some("Sur"));
        assert_eq!(m.display_name.as_deref(), Some("Display"));
        assert_eq!(m.groups, ["cn=a"]);
        let a = assertion(
            nid("u1", NAMEID_PERSISTENT),
            &[("urn:oid:1.3.6.1.4.1.5923.1.5.1.1", &["admins", "staff"])],
        );
        let m = map_identity(&a, &AttributeMapping::default()).unwrap();
        assert_eq!(m.groups, ["admins", "staff"]);
    }

    #[test]
    fn subject_rules() {
        let transient = assertion(nid("_t1", NAMEID_TRANSIENT), &[("uid", &["stable-1"])]);
        let err = map_identity(&transient, &AttributeMapping::default()).unwrap_err();
        assert_eq!(err.reason(), "no_subject");
        let m = AttributeMapping { subject: Some("uid".into()), ..Default::default() };
        assert_eq!(map_identity(&transient, &m).unwrap().subject, "stable-1");
        let multi = assertion(nid("_t1", NAMEID_TRANSIENT), &[("uid", &["a", "b"])]);
        assert!(matches!(map_identity(&multi, &m), Err(SamlError::NoSubject(_))));
        let missing = assertion(nid("p1", NAMEID_PERSISTENT), &[]);
        assert!(matches!(map_identity(&missing, &m), Err(SamlError::NoSubject(_))));
        let none = assertion(None, &[("email", &["a@b.example"])]);
        assert!(matches!(
            map_identity(&none, &AttributeMapping::default()),
            Err(SamlError::NoSubject(_))
        ));
        let empty = assertion(nid(" ", NAMEID_PERSISTENT), &[]);
        assert!(map_identity(&empty, &AttributeMapping::default()).is_err());
        // An unspecified-format NameID is a usable key.
        let unspecified = assertion(Some(NameId { value: "jdoe".into(), format: None }), &[]);
        assert_eq!(
            map_identity(&unspecified, &AttributeMapping::default()).unwrap().subject,
            "jdoe"
        );
    }

    #[test]
    fn presets_parse_and_serialise() {
        for (s, p) in [("okta", Preset::Okta), ("entra", Preset::Entra), ("google", Preset::Google)]
        {
            assert_eq!(s.parse::<Preset>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{s}\""));
        }
        assert!("azure".parse::<Preset>().is_err());
        let m = AttributeMapping::preset(Preset::Entra);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<AttributeMapping>(&json).unwrap(), m);
    }
}
