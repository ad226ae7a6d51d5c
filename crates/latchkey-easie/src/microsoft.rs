//! Microsoft Entra ID sign-in rules, applied after `openidconnect` has verified the ID token's
//! signature, audience, expiry and nonce. Social sign-in goes through `/common` or
//! `/organizations`, whose discovered issuer is a `{tenantid}` template that no library can
//! compare, so the exact issuer check (`{authority}/{tid}/v2.0`) is made here for every
//! Microsoft sign-in. Microsoft's `email` claim is whatever the tenant's administrator typed;
//! only `xms_edov: true` says the domain owner vouches for it.
//!
//! Which address an enterprise sign-in is checked with: the `email` claim when present (it
//! must then be valid and in the enrolled domain; there is no second chance with another
//! claim, so a user cannot pick the claim that suits them). Only when `email` is absent
//! (users without a mailbox, or `email` not configured as an optional claim) is
//! `preferred_username` used, and only if it is an address: in a work tenant it is the UPN,
//! whose suffix must be a domain verified in that tenant. A personal account may carry a phone
//! number there (no address, then); a value with an `@` that is not a valid address refuses.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    claims::{self, RawClaim, non_empty},
    domain::{Domain, Email},
    identity::{EnterpriseIdentity, IdentityKey, Profile, SocialIdentity},
    provider::{Authority, TenantId, normalize_guid},
    recheck::IdentitySnapshot,
    refusal::Refusal,
};

/// The claims of a Microsoft v2.0 ID token that the rules read; others are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MicrosoftClaims {
    pub iss: Option<String>,
    pub tid: Option<String>,
    pub oid: Option<String>,
    pub sub: Option<String>,
    pub email: Option<String>,
    pub preferred_username: Option<String>,
    /// Email domain owner verified. Microsoft documents it as a Boolean, and only the JSON
    /// boolean `true` counts (see [`crate::claims`]).
    #[serde(default)]
    pub xms_edov: RawClaim,
    /// 0 for a member of the tenant, 1 for a guest; absent means member.
    #[serde(default)]
    pub acct: RawClaim,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
}

impl MicrosoftClaims {
    /// From the ID token's JSON payload; a known claim of the wrong type refuses them all.
    pub fn from_json(json: &str) -> Result<Self, Refusal> {
        claims::from_json(json)
    }

    pub fn from_value(value: Value) -> Result<Self, Refusal> {
        claims::from_value(value)
    }

    /// The tenant the account belongs to (`tid`), required.
    pub fn tenant(&self) -> Result<TenantId, Refusal> {
        let tid = non_empty(self.tid.as_ref()).ok_or(Refusal::TidMissing)?;
        TenantId::parse(tid).map_err(|_| Refusal::TidInvalid)
    }

    /// The account's immutable object ID (`oid`), required, lower-cased.
    pub fn object_id(&self) -> Result<String, Refusal> {
        let oid = non_empty(self.oid.as_ref()).ok_or(Refusal::OidMissing)?;
        normalize_guid(oid).ok_or(Refusal::OidInvalid)
    }

    /// The identity key (`tid`, `oid`), never the address.
    pub fn key(&self) -> Result<IdentityKey, Refusal> {
        Ok(IdentityKey::Microsoft { tid: self.tenant()?, oid: self.object_id()? })
    }

    /// `iss` must be exactly `{authority}/{tid}/v2.0` for the token's own tenant.
    pub fn check_issuer(&self, authority: &Authority, tid: &TenantId) -> Result<(), Refusal> {
        match self.iss.as_deref() {
            Some(iss) if iss == authority.issuer_for(tid) => Ok(()),
            _ => Err(Refusal::IssuerMismatch),
        }
    }

    /// Refuses guests (`acct: 1`); a member is `acct: 0` or no `acct` at all. Any other value
    /// (`"0"`, `null`, `2`) is refused as malformed rather than guessed.
    pub fn check_member(&self) -> Result<(), Refusal> {
        match &self.acct {
            RawClaim::Absent => Ok(()),
            RawClaim::Present(v) if v.as_u64() == Some(0) => Ok(()),
            RawClaim::Present(v) if v.as_u64() == Some(1) => Err(Refusal::GuestAccount),
            RawClaim::Present(_) => Err(Refusal::AcctMalformed),
        }
    }

    /// The address the account claims (see the module documentation for which claim):
    /// `Ok(None)` when there is none, refused when `email` is present but not an address.
    pub fn claimed_email(&self) -> Result<Option<Email>, Refusal> {
        match (self.email.as_deref(), self.preferred_username.as_deref()) {
            (Some(email), _) => Email::parse(email).map(Some).map_err(|_| Refusal::EmailInvalid),
            // Personal accounts may have a phone number here; anything with an '@' must be an
            // address, or it could hide an enrolled domain from the routing.
            (None, Some(upn)) if upn.contains('@') => {
                Email::parse(upn).map(Some).map_err(|_| Refusal::EmailInvalid)
            }
            (None, _) => Ok(None),
        }
    }

    /// True only when `xms_edov` is exactly `true`, which vouches for the `email` claim.
    pub fn email_domain_owner_verified(&self) -> bool {
        self.xms_edov.is_exactly_true()
    }

    fn profile(&self) -> Profile {
        Profile {
            name: self.name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            picture: None,
        }
    }
}

/// The EASIE tenant check for a domain enrolled with Microsoft: `tid` is the pinned tenant
/// and not the consumer one, `iss` is that tenant's issuer, the account has an `oid` and is a
/// member rather than a guest, and its address is in the enrolled domain.
pub fn check_enterprise(
    claims: &MicrosoftClaims,
    pinned: &TenantId,
    authority: &Authority,
    enrolled: &Domain,
) -> Result<EnterpriseIdentity, Refusal> {
    let tid = claims.tenant()?;
    // Before the pinned comparison, so a personal account gets the reason that says so; and
    // a consumer "pinned" tenant (a corrupt enrollment) admits nobody.
    if tid.is_consumer() || pinned.is_consumer() {
        return Err(Refusal::ConsumerTenant);
    }
    if &tid != pinned {
        return Err(Refusal::TenantMismatch);
    }
    claims.check_issuer(authority, &tid)?;
    let oid = claims.object_id()?;
    claims.check_member()?;
    let email = claims.claimed_email()?.ok_or(Refusal::EmailMissing)?;
    if email.domain() != enrolled {
        return Err(Refusal::EmailOutsideDomain);
    }
    Ok(EnterpriseIdentity {
        key: IdentityKey::Microsoft { tid, oid },
        email_verified: claims.email.is_some() && claims.email_domain_owner_verified(),
        email,
        domain: enrolled.clone(),
        profile: claims.profile(),
        snapshot: IdentitySnapshot::microsoft(claims),
    })
}

/// A consumer or work-account sign-in through `/common` or `/organizations`. The issuer is
/// still checked against the token's own tenant. Only the `email` claim with `xms_edov`
/// exactly `true` may link to an existing account.
pub fn social_identity(
    claims: &MicrosoftClaims,
    authority: &Authority,
) -> Result<SocialIdentity, Refusal> {
    let tid = claims.tenant()?;
    claims.check_issuer(authority, &tid)?;
    let oid = claims.object_id()?;
    let email = claims.claimed_email().ok().flatten();
    let verified_email = match claims.email.as_deref() {
        Some(e) if claims.email_domain_owner_verified() => Email::parse(e).ok(),
        _ => None,
    };
    Ok(SocialIdentity {
        key: IdentityKey::Microsoft { tid, oid },
        email,
        verified_email,
        profile: claims.profile(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::CONSUMER_TENANT_ID;
    use serde_json::json;

    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const OTHER_TID: &str = "5b2c6f1e-0a8d-4e0b-9c35-1f2a3b4c5d6e";
    const OID: &str = "00000000-0000-0000-66f3-3332eca7ea81";

    fn member(overrides: Value) -> MicrosoftClaims {
        let mut base = json!({
            "iss": format!("https://login.microsoftonline.com/{TID}/v2.0"),
            "tid": TID,
            "oid": OID,
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "aud": "client-id",
            "email": "ada@contoso.com",
            "preferred_username": "ada@contoso.com",
            "name": "Ada Lovelace",
            "ver": "2.0",
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        MicrosoftClaims::from_value(base).unwrap()
    }

    fn pinned() -> TenantId {
        TenantId::parse(TID).unwrap()
    }

    fn contoso() -> Domain {
        Domain::parse("contoso.com").unwrap()
    }

    fn check(c: &MicrosoftClaims) -> Result<EnterpriseIdentity, Refusal> {
        check_enterprise(c, &pinned(), &Authority::default(), &contoso())
    }

    fn refusal(overrides: Value) -> &'static str {
        check(&member(overrides)).unwrap_err().reason()
    }

    #[test]
    fn a_member_of_the_pinned_tenant_is_accepted() {
        let id = check(&member(json!({}))).unwrap();
        assert_eq!(id.key, IdentityKey::Microsoft { tid: pinned(), oid: OID.into() });
        assert_eq!(id.email.to_string(), "ada@contoso.com");
        assert!(!id.email_verified, "no xms_edov: the address is not vouched for");
        assert!(check(&member(json!({"acct": 0, "xms_edov": true}))).unwrap().email_verified);
        // Upper-case GUIDs are the same tenant and object; the issuer is still exact.
        let upper = member(json!({"tid": TID.to_uppercase(), "oid": OID.to_uppercase()}));
        assert_eq!(
            check(&upper).unwrap().key,
            IdentityKey::Microsoft { tid: pinned(), oid: OID.into() }
        );
        // The authority may be configured with a trailing slash.
        let slash = Authority::parse("https://login.microsoftonline.com/").unwrap();
        assert!(check_enterprise(&member(json!({})), &pinned(), &slash, &contoso()).is_ok());
    }

    #[test]
    fn every_refusal_has_its_reason() {
        assert_eq!(refusal(json!({"tid": null})), "tid_missing");
        assert_eq!(refusal(json!({"tid": "common"})), "tid_invalid");
        assert_eq!(
            refusal(
                json!({"tid": OTHER_TID, "iss": format!("https://login.microsoftonline.com/{OTHER_TID}/v2.0")})
            ),
            "tenant_mismatch"
        );
        assert_eq!(
            refusal(
                json!({"tid": CONSUMER_TENANT_ID, "iss": format!("https://login.microsoftonline.com/{CONSUMER_TENANT_ID}/v2.0")})
            ),
            "consumer_tenant"
        );
        assert_eq!(refusal(json!({"iss": null})), "issuer_mismatch");
        assert_eq!(
            refusal(json!({"iss": format!("https://login.microsoftonline.com/{OTHER_TID}/v2.0")})),
            "issuer_mismatch"
        );
        assert_eq!(
            refusal(json!({"iss": format!("https://sts.windows.net/{TID}/")})),
            "issuer_mismatch"
        );
        assert_eq!(
            refusal(json!({"iss": format!("https://login.microsoftonline.com/{TID}/v2.0/")})),
            "issuer_mismatch"
        );
        assert_eq!(
            refusal(
                json!({"iss": format!("https://login.microsoftonline.com/{}/v2.0", TID.to_uppercase())})
            ),
            "issuer_mismatch"
        );
        assert_eq!(refusal(json!({"oid": null})), "oid_missing");
        assert_eq!(refusal(json!({"oid": "not-a-guid"})), "oid_invalid");
        assert_eq!(refusal(json!({"acct": 1})), "guest_account");
        for odd in
            [json!("1"), json!("0"), json!(2), json!(true), json!(-1), json!(0.5), json!([0])]
        {
            assert_eq!(refusal(json!({"acct": odd.clone()})), "acct_malformed", "{odd}");
        }
        // The helper drops claims set to null; a present `"acct": null` is malformed too.
        let mut with_null = member(json!({}));
        with_null.acct = RawClaim::Present(Value::Null);
        assert_eq!(check(&with_null).unwrap_err().reason(), "acct_malformed");
        assert_eq!(refusal(json!({"email": null, "preferred_username": null})), "email_missing");
        assert_eq!(refusal(json!({"email": "ada"})), "email_invalid");
        assert_eq!(refusal(json!({"email": "ada@fabrikam.com"})), "email_outside_domain");
        assert_eq!(refusal(json!({"email": "ada@eu.contoso.com"})), "email_outside_domain");
    }

    #[test]
    fn a_consumer_pinned_tenant_admits_nobody() {
        let consumer = TenantId::parse(CONSUMER_TENANT_ID).unwrap();
        let err =
            check_enterprise(&member(json!({})), &consumer, &Authority::default(), &contoso());
        assert_eq!(err.unwrap_err().reason(), "consumer_tenant");
    }

    #[test]
    fn preferred_username_stands_in_only_for_a_missing_email() {
        let upn = member(json!({"email": null, "preferred_username": "Ada@Contoso.com"}));
        let id = check(&upn).unwrap();
        assert_eq!(id.email.to_string(), "ada@contoso.com");
        assert!(!id.email_verified);
        let no_address = member(json!({"email": null, "preferred_username": "+4912345"}));
        assert_eq!(check(&no_address).unwrap_err().reason(), "email_missing");
        let bad_upn = member(json!({"email": null, "preferred_username": "ada@contoso.com."}));
        assert_eq!(check(&bad_upn).unwrap_err().reason(), "email_invalid");
        // An email outside the domain is not rescued by a UPN inside it.
        let both =
            member(json!({"email": "ada@fabrikam.com", "preferred_username": "ada@contoso.com"}));
        assert_eq!(check(&both).unwrap_err().reason(), "email_outside_domain");
    }

    #[test]
    fn another_tenants_user_with_the_same_email_is_refused() {
        let other = member(json!({
            "tid": OTHER_TID,
            "iss": format!("https://login.microsoftonline.com/{OTHER_TID}/v2.0"),
            "email": "ada@contoso.com",
            "xms_edov": true,
        }));
        assert_eq!(check(&other).unwrap_err().reason(), "tenant_mismatch");
    }

    #[test]
    fn social_links_only_with_xms_edov_true() {
        let a = Authority::default();
        let verified = social_identity(&member(json!({"xms_edov": true})), &a).unwrap();
        assert_eq!(verified.verified_email.unwrap().to_string(), "ada@contoso.com");
        for not_true in [json!(false), json!("true"), json!("1"), json!(1), json!(null)] {
            let c = member(json!({"xms_edov": not_true.clone()}));
            let id = social_identity(&c, &a).unwrap();
            assert!(id.verified_email.is_none(), "{not_true}");
            assert_eq!(id.email.unwrap().to_string(), "ada@contoso.com");
        }
        // xms_edov vouches for `email`, never for `preferred_username`.
        let upn_only = member(json!({"email": null, "xms_edov": true}));
        assert!(social_identity(&upn_only, &a).unwrap().verified_email.is_none());
        // Personal accounts are fine socially; the issuer must still be their tenant's.
        let consumer = member(json!({
            "tid": CONSUMER_TENANT_ID,
            "iss": format!("https://login.microsoftonline.com/{CONSUMER_TENANT_ID}/v2.0"),
        }));
        assert!(social_identity(&consumer, &a).is_ok());
        let forged = member(json!({"tid": CONSUMER_TENANT_ID}));
        assert_eq!(social_identity(&forged, &a).unwrap_err().reason(), "issuer_mismatch");
        assert_eq!(
            social_identity(&member(json!({"oid": null})), &a).unwrap_err().reason(),
            "oid_missing"
        );
    }

    #[test]
    fn wrong_json_types_refuse_the_claims() {
        for bad in [json!({"tid": 5}), json!({"oid": [OID]}), json!({"email": false})] {
            assert_eq!(
                MicrosoftClaims::from_value(bad.clone()).unwrap_err().reason(),
                "claims_malformed",
                "{bad}"
            );
        }
    }
}
