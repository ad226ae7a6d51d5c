//! Google sign-in rules, applied after `openidconnect` has verified the ID token's signature,
//! issuer, audience, expiry and nonce. A Google Workspace member carries `hd` (the hosted
//! domain); a consumer account (gmail.com or any address registered as a Google account)
//! carries none, which is why `hd`, and not the email address, is what proves that the
//! Workspace owning the enrolled domain vouches for the account.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    claims::{self, RawClaim, non_empty},
    domain::{Domain, Email},
    identity::{EnterpriseIdentity, IdentityKey, Profile, SocialIdentity},
    recheck::IdentitySnapshot,
    refusal::Refusal,
};

/// The claims of a Google ID token that the rules read; others are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GoogleClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub email: Option<String>,
    /// Only the JSON boolean `true` counts (see [`crate::claims`]).
    #[serde(default)]
    pub email_verified: RawClaim,
    pub hd: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
}

impl GoogleClaims {
    /// From the ID token's JSON payload; a known claim of the wrong type refuses them all.
    pub fn from_json(json: &str) -> Result<Self, Refusal> {
        claims::from_json(json)
    }

    pub fn from_value(value: Value) -> Result<Self, Refusal> {
        claims::from_value(value)
    }

    /// The identity key (`iss`, `sub`), both required.
    pub fn key(&self) -> Result<IdentityKey, Refusal> {
        let iss = non_empty(self.iss.as_ref()).ok_or(Refusal::IssMissing)?;
        let sub = non_empty(self.sub.as_ref()).ok_or(Refusal::SubMissing)?;
        Ok(IdentityKey::Google { iss: iss.to_owned(), sub: sub.to_owned() })
    }

    /// The `hd` claim as a domain: `Ok(None)` when absent, refused when present but invalid
    /// (a malformed `hd` is never read as "no Workspace").
    pub fn hosted_domain(&self) -> Result<Option<Domain>, Refusal> {
        match non_empty(self.hd.as_ref()) {
            None if self.hd.is_some() => Err(Refusal::HdInvalid),
            None => Ok(None),
            Some(hd) => Domain::parse(hd).map(Some).map_err(|_| Refusal::HdInvalid),
        }
    }

    /// The `email` claim as an address: `Ok(None)` when absent, refused when present but
    /// invalid.
    pub fn email_address(&self) -> Result<Option<Email>, Refusal> {
        match self.email.as_deref() {
            None => Ok(None),
            Some(email) => Email::parse(email).map(Some).map_err(|_| Refusal::EmailInvalid),
        }
    }

    pub fn email_verified(&self) -> bool {
        self.email_verified.is_exactly_true()
    }

    fn profile(&self) -> Profile {
        Profile {
            name: self.name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            picture: self.picture.clone(),
        }
    }
}

/// The EASIE tenant check for a domain enrolled with Google: `hd` equal to the enrolled
/// domain, `email_verified` exactly `true`, the address in that domain and not sub-addressed.
/// The order fixes which reason an account failing several checks is refused with.
pub fn check_enterprise(
    claims: &GoogleClaims,
    enrolled: &Domain,
) -> Result<EnterpriseIdentity, Refusal> {
    let key = claims.key()?;
    let hd = claims.hosted_domain()?.ok_or(Refusal::HdMissing)?;
    if &hd != enrolled {
        return Err(Refusal::HdMismatch);
    }
    let email = claims.email_address()?.ok_or(Refusal::EmailMissing)?;
    if !claims.email_verified() {
        return Err(Refusal::EmailUnverified);
    }
    if email.domain() != enrolled {
        return Err(Refusal::EmailOutsideDomain);
    }
    if email.has_sub_addressing() {
        return Err(Refusal::SubAddressing);
    }
    Ok(EnterpriseIdentity {
        key,
        email,
        domain: enrolled.clone(),
        email_verified: true,
        profile: claims.profile(),
        snapshot: IdentitySnapshot::google(claims),
    })
}

/// A consumer sign-in. An email claim that is not a valid address is dropped rather than
/// refused (the account is still keyed by `sub`), but only a valid address with
/// `email_verified` exactly `true` may ever link to an existing account.
pub fn social_identity(claims: &GoogleClaims) -> Result<SocialIdentity, Refusal> {
    let key = claims.key()?;
    let email = claims.email_address().ok().flatten();
    let verified_email = email.clone().filter(|_| claims.email_verified());
    Ok(SocialIdentity { key, email, verified_email, profile: claims.profile() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn workspace(overrides: Value) -> GoogleClaims {
        let mut base = json!({
            "iss": "https://accounts.google.com",
            "sub": "110169484474386276334",
            "aud": "client-id",
            "email": "ada@acme.com",
            "email_verified": true,
            "hd": "acme.com",
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "picture": "https://lh3.googleusercontent.com/a/x",
            "unknown_claim": {"nested": [1, 2]},
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        GoogleClaims::from_value(base).unwrap()
    }

    fn acme() -> Domain {
        Domain::parse("acme.com").unwrap()
    }

    fn refusal(overrides: Value) -> &'static str {
        check_enterprise(&workspace(overrides), &acme()).unwrap_err().reason()
    }

    #[test]
    fn a_workspace_member_of_the_enrolled_domain_is_accepted() {
        let id = check_enterprise(&workspace(json!({})), &acme()).unwrap();
        assert_eq!(
            id.key,
            IdentityKey::Google {
                iss: "https://accounts.google.com".into(),
                sub: "110169484474386276334".into()
            }
        );
        assert_eq!(id.email.to_string(), "ada@acme.com");
        assert_eq!(id.domain, acme());
        assert!(id.email_verified);
        assert_eq!(id.profile.given_name.as_deref(), Some("Ada"));
        assert_eq!(id.snapshot.hd.as_deref(), Some("acme.com"));
        // Case is not a difference.
        let upper = workspace(json!({"hd": "ACME.COM", "email": "Ada@Acme.Com"}));
        assert_eq!(check_enterprise(&upper, &acme()).unwrap().email.to_string(), "ada@acme.com");
    }

    #[test]
    fn every_refusal_has_its_reason() {
        assert_eq!(refusal(json!({"iss": null})), "iss_missing");
        assert_eq!(refusal(json!({"sub": ""})), "sub_missing");
        assert_eq!(refusal(json!({"hd": null})), "hd_missing");
        assert_eq!(refusal(json!({"hd": ""})), "hd_invalid");
        assert_eq!(refusal(json!({"hd": "acme.com."})), "hd_invalid");
        assert_eq!(refusal(json!({"hd": "xn--acme-bsa.com"})), "hd_mismatch");
        assert_eq!(refusal(json!({"hd": "eu.acme.com"})), "hd_mismatch");
        assert_eq!(refusal(json!({"hd": "evil.com"})), "hd_mismatch");
        assert_eq!(refusal(json!({"email": null})), "email_missing");
        assert_eq!(refusal(json!({"email": "ada"})), "email_invalid");
        assert_eq!(refusal(json!({"email_verified": false})), "email_unverified");
        assert_eq!(refusal(json!({"email_verified": "true"})), "email_unverified");
        assert_eq!(refusal(json!({"email_verified": 1})), "email_unverified");
        assert_eq!(refusal(json!({"email_verified": null})), "email_unverified");
        assert_eq!(refusal(json!({"email": "ada@evil.com"})), "email_outside_domain");
        assert_eq!(refusal(json!({"email": "ada@eu.acme.com"})), "email_outside_domain");
        assert_eq!(refusal(json!({"email": "ada+x@acme.com"})), "sub_addressing");
        assert_eq!(refusal(json!({"email": "ada=x@acme.com"})), "sub_addressing");
        assert_eq!(refusal(json!({"email": "ada#x@acme.com"})), "sub_addressing");
    }

    #[test]
    fn a_tenant_swap_is_refused() {
        // A Workspace of evil.com that added an alias on acme.com.
        assert_eq!(refusal(json!({"hd": "evil.com", "email": "ada@acme.com"})), "hd_mismatch");
        let other = Domain::parse("evil.com").unwrap();
        let swapped = workspace(json!({"hd": "evil.com", "email": "ada@acme.com"}));
        assert_eq!(
            check_enterprise(&swapped, &other).unwrap_err().reason(),
            "email_outside_domain"
        );
    }

    #[test]
    fn wrong_json_types_refuse_the_claims() {
        for bad in [
            json!({"sub": 42, "iss": "x"}),
            json!({"sub": "1", "email": ["ada@acme.com"]}),
            json!({"sub": "1", "hd": {"d": "acme.com"}}),
            json!({"sub": "1", "name": 3}),
            json!(["sub"]),
        ] {
            let err = GoogleClaims::from_value(bad.clone()).unwrap_err();
            assert_eq!(err.reason(), "claims_malformed", "{bad}");
        }
        let dup = r#"{"sub":"1","sub":"2"}"#;
        assert_eq!(GoogleClaims::from_json(dup).unwrap_err().reason(), "claims_malformed");
        assert!(GoogleClaims::from_json(r#"{"sub":"1","iss":"x","extra":true}"#).is_ok());
    }

    #[test]
    fn social_links_only_verified_addresses() {
        let consumer = workspace(json!({"hd": null, "email": "ada@gmail.com"}));
        let id = social_identity(&consumer).unwrap();
        assert_eq!(id.verified_email.unwrap().to_string(), "ada@gmail.com");
        for unverified in [json!(false), json!("true"), json!(null)] {
            let c = workspace(json!({"hd": null, "email_verified": unverified.clone()}));
            let id = social_identity(&c).unwrap();
            assert!(id.verified_email.is_none(), "{unverified}");
            assert_eq!(id.email.unwrap().to_string(), "ada@acme.com");
        }
        let no_email = social_identity(&workspace(json!({"email": null}))).unwrap();
        assert!(no_email.email.is_none() && no_email.verified_email.is_none());
        let bad_email = social_identity(&workspace(json!({"email": "not an address"}))).unwrap();
        assert!(bad_email.email.is_none() && bad_email.verified_email.is_none());
        assert_eq!(
            social_identity(&workspace(json!({"sub": null}))).unwrap_err().reason(),
            "sub_missing"
        );
    }

    fn variant() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,10}".prop_map(|l| format!("{l}.acme.com")),
            Just("acme.com.".to_owned()),
            Just("acme.co".to_owned()),
            Just("com".to_owned()),
            "[a-z0-9]{1,10}".prop_map(|l| format!("xn--{l}.com")),
            "[a-z0-9]{1,10}".prop_map(|l| format!("acme.com.{l}")),
            "[a-z]{1,6}".prop_map(|l| format!("acme{l}.com")),
            Just("аcme.com".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn hd_variants_are_never_the_enrolled_domain(hd in variant()) {
            let c = workspace(json!({"hd": hd, "email": "ada@acme.com"}));
            let reason = check_enterprise(&c, &acme()).unwrap_err().reason();
            prop_assert!(reason == "hd_mismatch" || reason == "hd_invalid", "{}", reason);
        }

        #[test]
        fn hd_case_variants_are_accepted(mask in any::<u8>()) {
            let hd: String = "acme.com"
                .chars()
                .enumerate()
                .map(|(i, c)| if mask >> i & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            let c = workspace(json!({"hd": hd}));
            prop_assert!(check_enterprise(&c, &acme()).is_ok());
        }
    }
}
