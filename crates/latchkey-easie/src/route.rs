//! Classifying a validated sign-in as enterprise, social or refused. The decision is made from
//! the claims alone, never from which button the browser pressed: a Workspace account of an
//! enrolled domain that came in through "Continue with Google" is still an enterprise sign-in,
//! and an account claiming an enrolled domain through the wrong door is refused.
//!
//! The enrollments are looked up through a closure (domain → enrollment), so the crate stays
//! pure and the caller decides how to query its store.

use crate::{
    domain::{Domain, Email},
    google::{self, GoogleClaims},
    identity::EnterpriseIdentity,
    microsoft::{self, MicrosoftClaims},
    provider::{Authority, Provider, TenantId},
    refusal::Refusal,
};

/// An enrolled domain and how its members must sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The caller's handle for the EASIE connection (opaque here).
    pub connection_id: String,
    pub domain: Domain,
    pub provider: Provider,
    /// The pinned Microsoft tenant; `None` for Google.
    pub tenant: Option<TenantId>,
}

/// The validated claims of one sign-in, tagged with the provider it came through.
#[derive(Debug, Clone, Copy)]
pub enum SignInClaims<'a> {
    Google(&'a GoogleClaims),
    Microsoft(&'a MicrosoftClaims),
}

impl SignInClaims<'_> {
    pub fn provider(&self) -> Provider {
        match self {
            Self::Google(_) => Provider::Google,
            Self::Microsoft(_) => Provider::Microsoft,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Check the tenant ([`enterprise_identity`]) against this enrollment.
    Enterprise(Enrollment),
    /// No enrolled domain is involved: a consumer sign-in.
    Social,
    Refuse(Refusal),
}

/// Decides the route of a sign-in. A claimed address or `hd` that is present but malformed
/// refuses: it could hide an enrolled domain from the lookup.
pub fn classify(claims: SignInClaims<'_>, lookup: impl Fn(&Domain) -> Option<Enrollment>) -> Route {
    let result = match claims {
        SignInClaims::Google(c) => classify_google(c, &lookup),
        SignInClaims::Microsoft(c) => classify_microsoft(c, &lookup),
    };
    result.unwrap_or_else(Route::Refuse)
}

/// The email domain decides first, since identifier-first routing sends that address's users
/// to the enrolled provider; `hd` catches a Workspace of an enrolled domain whose address is
/// elsewhere. An `hd` enrolled with Google routes to the enterprise check, which refuses any
/// disagreement between `hd` and the address.
fn classify_google(
    c: &GoogleClaims,
    lookup: &impl Fn(&Domain) -> Option<Enrollment>,
) -> Result<Route, Refusal> {
    let hd = c.hosted_domain()?;
    let email_domain = c.email_address()?.map(|e: Email| e.domain().clone());
    let by_email = email_domain.as_ref().and_then(lookup);
    let by_hd = hd.as_ref().and_then(lookup);
    for enrollment in [&by_email, &by_hd].into_iter().flatten() {
        if enrollment.provider != Provider::Google {
            return Err(Refusal::OtherProviderForEnrolledDomain);
        }
    }
    if let Some(enrollment) = by_email {
        if hd.is_none() {
            return Err(Refusal::ConsumerAccountOnEnrolledDomain);
        }
        return Ok(Route::Enterprise(enrollment));
    }
    Ok(by_hd.map_or(Route::Social, Route::Enterprise))
}

fn classify_microsoft(
    c: &MicrosoftClaims,
    lookup: &impl Fn(&Domain) -> Option<Enrollment>,
) -> Result<Route, Refusal> {
    let Some(email) = c.claimed_email()? else { return Ok(Route::Social) };
    let Some(enrollment) = lookup(email.domain()) else { return Ok(Route::Social) };
    if enrollment.provider != Provider::Microsoft {
        return Err(Refusal::OtherProviderForEnrolledDomain);
    }
    // A personal account's tid is the consumer tenant; a missing or malformed tid cannot
    // show otherwise, so it is refused by the enterprise check rather than here.
    if c.tenant().is_ok_and(|t| t.is_consumer()) {
        return Err(Refusal::ConsumerAccountOnEnrolledDomain);
    }
    Ok(Route::Enterprise(enrollment))
}

/// Runs the tenant check of the enrollment's provider. The claims must come from that
/// provider, and a Microsoft enrollment must have its tenant pinned.
pub fn enterprise_identity(
    claims: SignInClaims<'_>,
    enrollment: &Enrollment,
    authority: &Authority,
) -> Result<EnterpriseIdentity, Refusal> {
    match (claims, enrollment.provider) {
        (SignInClaims::Google(c), Provider::Google) => {
            google::check_enterprise(c, &enrollment.domain)
        }
        (SignInClaims::Microsoft(c), Provider::Microsoft) => {
            let pinned = enrollment.tenant.as_ref().ok_or(Refusal::TenantNotPinned)?;
            microsoft::check_enterprise(c, pinned, authority, &enrollment.domain)
        }
        _ => Err(Refusal::OtherProviderForEnrolledDomain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::CONSUMER_TENANT_ID;
    use serde_json::{Value, json};

    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn enrollments(domain: &Domain) -> Option<Enrollment> {
        let (provider, tenant) = match domain.as_str() {
            "acme.com" => (Provider::Google, None),
            "contoso.com" => (Provider::Microsoft, Some(TenantId::parse(TID).unwrap())),
            _ => return None,
        };
        Some(Enrollment {
            connection_id: format!("conn-{domain}"),
            domain: domain.clone(),
            provider,
            tenant,
        })
    }

    fn google(v: Value) -> GoogleClaims {
        let mut base =
            json!({"iss": "https://accounts.google.com", "sub": "1", "email_verified": true});
        for (k, val) in v.as_object().unwrap() {
            base[k] = val.clone();
        }
        GoogleClaims::from_value(base).unwrap()
    }

    fn microsoft(tid: &str, email: &str) -> MicrosoftClaims {
        MicrosoftClaims::from_value(json!({
            "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
            "tid": tid,
            "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "email": email,
        }))
        .unwrap()
    }

    fn route_g(v: Value) -> Route {
        classify(SignInClaims::Google(&google(v)), enrollments)
    }

    fn route_m(tid: &str, email: &str) -> Route {
        classify(SignInClaims::Microsoft(&microsoft(tid, email)), enrollments)
    }

    fn refused(r: Route) -> &'static str {
        match r {
            Route::Refuse(reason) => reason.reason(),
            other => panic!("{other:?}"),
        }
    }

    fn enterprise_domain(r: Route) -> String {
        match r {
            Route::Enterprise(e) => e.domain.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn google_routes() {
        assert_eq!(
            enterprise_domain(route_g(json!({"email": "ada@acme.com", "hd": "acme.com"}))),
            "acme.com"
        );
        assert_eq!(route_g(json!({"email": "ada@gmail.com"})), Route::Social);
        assert_eq!(route_g(json!({"email": "ada@other.com", "hd": "other.com"})), Route::Social);
        assert_eq!(route_g(json!({})), Route::Social);
        // A consumer Google account registered with an enrolled address.
        assert_eq!(
            refused(route_g(json!({"email": "ada@acme.com"}))),
            "consumer_account_on_enrolled_domain"
        );
        // A Google account on a Microsoft-enrolled domain, Workspace or not.
        assert_eq!(
            refused(route_g(json!({"email": "ada@contoso.com"}))),
            "other_provider_for_enrolled_domain"
        );
        assert_eq!(
            refused(route_g(json!({"email": "ada@contoso.com", "hd": "contoso.com"}))),
            "other_provider_for_enrolled_domain"
        );
        assert_eq!(
            refused(route_g(json!({"email": "ada@x.com", "hd": "contoso.com"}))),
            "other_provider_for_enrolled_domain"
        );
        // Tenant swaps go to the enterprise check, which refuses them.
        assert_eq!(
            enterprise_domain(route_g(json!({"email": "ada@acme.com", "hd": "evil.com"}))),
            "acme.com"
        );
        assert_eq!(
            enterprise_domain(route_g(json!({"email": "ada@evil.com", "hd": "acme.com"}))),
            "acme.com"
        );
        // Malformed values refuse instead of hiding a domain.
        assert_eq!(refused(route_g(json!({"email": "ada@acme.com."}))), "email_invalid");
        assert_eq!(
            refused(route_g(json!({"email": "ada@acme.com", "hd": "acme.com."}))),
            "hd_invalid"
        );
    }

    #[test]
    fn microsoft_routes() {
        assert_eq!(enterprise_domain(route_m(TID, "ada@contoso.com")), "contoso.com");
        // Another tenant claiming the domain still goes to the enterprise check (tenant_mismatch).
        let other = "5b2c6f1e-0a8d-4e0b-9c35-1f2a3b4c5d6e";
        assert_eq!(enterprise_domain(route_m(other, "ada@contoso.com")), "contoso.com");
        assert_eq!(route_m(TID, "ada@fabrikam.com"), Route::Social);
        assert_eq!(route_m(CONSUMER_TENANT_ID, "ada@outlook.com"), Route::Social);
        assert_eq!(
            refused(route_m(CONSUMER_TENANT_ID, "ada@contoso.com")),
            "consumer_account_on_enrolled_domain"
        );
        assert_eq!(refused(route_m(TID, "ada@acme.com")), "other_provider_for_enrolled_domain");
        assert_eq!(refused(route_m(TID, "ada@@contoso.com")), "email_invalid");
        // A personal account registered with a work address shows it as preferred_username.
        let msa = MicrosoftClaims::from_value(json!({
            "tid": CONSUMER_TENANT_ID,
            "preferred_username": "ada@contoso.com",
        }))
        .unwrap();
        assert_eq!(
            refused(classify(SignInClaims::Microsoft(&msa), enrollments)),
            "consumer_account_on_enrolled_domain"
        );
        let no_email = MicrosoftClaims::from_value(json!({"tid": TID, "oid": "x"})).unwrap();
        assert_eq!(classify(SignInClaims::Microsoft(&no_email), enrollments), Route::Social);
    }

    #[test]
    fn enterprise_identity_dispatches_on_the_enrollment() {
        let a = Authority::default();
        let contoso = enrollments(&Domain::parse("contoso.com").unwrap()).unwrap();
        let acme = enrollments(&Domain::parse("acme.com").unwrap()).unwrap();
        let m = microsoft(TID, "ada@contoso.com");
        assert!(enterprise_identity(SignInClaims::Microsoft(&m), &contoso, &a).is_ok());
        assert_eq!(
            enterprise_identity(SignInClaims::Microsoft(&m), &acme, &a).unwrap_err().reason(),
            "other_provider_for_enrolled_domain"
        );
        let unpinned = Enrollment { tenant: None, ..contoso };
        assert_eq!(
            enterprise_identity(SignInClaims::Microsoft(&m), &unpinned, &a).unwrap_err().reason(),
            "tenant_not_pinned"
        );
        let g = google(json!({"email": "ada@acme.com", "hd": "acme.com"}));
        assert!(enterprise_identity(SignInClaims::Google(&g), &acme, &a).is_ok());
        assert_eq!(SignInClaims::Google(&g).provider(), Provider::Google);
        let swapped = google(json!({"email": "ada@acme.com", "hd": "evil.com"}));
        assert_eq!(
            enterprise_identity(SignInClaims::Google(&swapped), &acme, &a).unwrap_err().reason(),
            "hd_mismatch"
        );
    }
}
