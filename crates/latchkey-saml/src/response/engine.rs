//! The samael seam: signature verification and XSW reduction through samael's high-level parse
//! (`ReduceMode::ValidateAndMarkNoAncestors`, its default), configured so that only its
//! signature and structure checks can decide: its clock checks read the real time, so they are
//! widened out of the way (ours in `checks` use `expect.now`), and its InResponseTo handling is
//! off (`allow_idp_initiated`) because ours distinguishes missing, mismatched and unsolicited.

use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use samael::key_info::{KeyInfo, X509Data};
use samael::metadata::{EntityDescriptor, IdpSsoDescriptor, KeyDescriptor};
use samael::schema::Assertion;
use samael::service_provider::{Error as SpError, ServiceProvider};

use super::ResponseExpectations;
use crate::algorithms::AlgorithmPolicy;
use crate::{Result, SamlError};

/// Wide enough for any gap between the real clock and `expect.now` (tests run at fixed
/// instants); `checks::check_time_syntax` keeps dates within years 0000–9999, so samael's
/// `date ± 200 years` never overflows chrono.
const NEUTRAL_WINDOW_DAYS: i64 = 365 * 200;

/// samael's allow-list for the policy. It has no RSA-SHA1 entry, so a policy allowing SHA-1
/// gets no samael list; `shape::check_signature` then enforces the policy on every signature
/// (it does so in all cases, before samael runs).
fn allowed_algorithms(policy: AlgorithmPolicy) -> Option<Vec<AllowedSignatureAlgorithm>> {
    if policy.allow_sha1 {
        return None;
    }
    Some(vec![
        AllowedSignatureAlgorithm::RsaSha256,
        AllowedSignatureAlgorithm::RsaSha384,
        AllowedSignatureAlgorithm::RsaSha512,
        AllowedSignatureAlgorithm::EcdsaSha256,
        AllowedSignatureAlgorithm::EcdsaSha384,
        AllowedSignatureAlgorithm::EcdsaSha512,
    ])
}

fn idp_metadata(expect: &ResponseExpectations<'_>) -> EntityDescriptor {
    let key_descriptors = expect
        .idp_certs
        .iter()
        .map(|der| KeyDescriptor {
            key_use: Some("signing".into()),
            key_info: KeyInfo {
                id: None,
                x509_data: Some(X509Data { certificates: vec![STANDARD.encode(der)] }),
            },
            encryption_methods: None,
        })
        .collect();
    EntityDescriptor {
        entity_id: Some(expect.idp_entity_id.to_owned()),
        idp_sso_descriptors: Some(vec![IdpSsoDescriptor {
            id: None,
            valid_until: None,
            cache_duration: None,
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            error_url: None,
            signature: None,
            key_descriptors,
            organization: None,
            contact_people: Vec::new(),
            artifact_resolution_service: Vec::new(),
            single_logout_services: Vec::new(),
            manage_name_id_services: Vec::new(),
            name_id_formats: Vec::new(),
            want_authn_requests_signed: None,
            single_sign_on_services: Vec::new(),
            name_id_mapping_services: Vec::new(),
            assertion_id_request_services: Vec::new(),
            attribute_profiles: Vec::new(),
            attributes: Vec::new(),
        }]),
        ..EntityDescriptor::default()
    }
}

fn service_provider(expect: &ResponseExpectations<'_>) -> Result<ServiceProvider> {
    // Never hand samael zero certificates: it would then verify nothing.
    if expect.idp_certs.is_empty() {
        return Err(SamlError::NoSigningCertificate);
    }
    for der in expect.idp_certs {
        openssl::x509::X509::from_der(der)
            .map_err(|e| SamlError::Key(format!("IdP signing certificate: {e}")))?;
    }
    let window = chrono::Duration::days(NEUTRAL_WINDOW_DAYS);
    Ok(ServiceProvider {
        entity_id: Some(expect.sp_entity_id.to_owned()),
        acs_url: Some(expect.acs_url.to_owned()),
        idp_metadata: idp_metadata(expect),
        allow_idp_initiated: true,
        max_issue_delay: window,
        max_clock_skew: window,
        allowed_signature_algorithms: allowed_algorithms(expect.algorithms),
        ..ServiceProvider::default()
    })
}

fn guarded<T>(run: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(run))
        .map_err(|_| SamlError::Internal("the SAML library panicked on this message".into()))
}

fn map_error(error: SpError) -> SamlError {
    match error {
        SpError::FailedToValidateSignature
        | SpError::CryptoXmlError(_)
        | SpError::CryptoProviderError(_) => {
            SamlError::BadSignature("xmlsec did not verify the message".into())
        }
        SpError::DestinationValidationError { response_destination, .. } => {
            SamlError::Destination(response_destination.unwrap_or_default())
        }
        SpError::AssertionIssuerMismatch { issuer, .. }
        | SpError::ResponseIssuerMismatch { issuer, .. } => {
            SamlError::Issuer(issuer.unwrap_or_default())
        }
        SpError::AssertionConditionAudienceRestrictionFailed { .. } => SamlError::Audience,
        SpError::AssertionRecipientMismatch { assertion_recipient, .. } => {
            SamlError::Recipient(assertion_recipient.unwrap_or_default())
        }
        SpError::AssertionBearerSubjectConfirmationMissing
        | SpError::AssertionSubjectConfirmationMissing => SamlError::NoBearerConfirmation,
        SpError::AssertionExpired { .. }
        | SpError::ResponseExpired { .. }
        | SpError::AssertionConditionExpired { .. }
        | SpError::AssertionSubjectConfirmationExpired { .. } => SamlError::Expired,
        SpError::AssertionConditionExpiredBefore { .. }
        | SpError::AssertionSubjectConfirmationExpiredBefore { .. } => SamlError::NotYetValid,
        SpError::AssertionInResponseToInvalid { .. }
        | SpError::ResponseInResponseToInvalid { .. } => SamlError::InResponseToMismatch,
        SpError::ResponseBadStatusCode { code } => SamlError::Status(code),
        SpError::FailedToParseSamlResponse(e) => SamlError::Malformed(e.to_string()),
        SpError::FailedToParseSamlAssertion(e) => {
            let text = e.to_string();
            if text.contains("reduced signed response shell") {
                SamlError::Wrapping(text)
            } else {
                SamlError::Malformed(text)
            }
        }
        other => SamlError::Internal(other.to_string()),
    }
}

/// Verifies every signature in `xml` and returns the assertion samael reduced it to.
pub(crate) fn verify(xml: &str, expect: &ResponseExpectations<'_>) -> Result<Assertion> {
    let sp = service_provider(expect)?;
    guarded(|| sp.parse_xml_response(xml, None))?.map_err(map_error)
}

/// Verifies the Response signature of a message whose assertion is encrypted. samael's
/// high-level parse cannot be used here: it would try to decrypt with its own AES-128-only
/// code. This is the same reducing verifier that parse runs first, with the same allow-list;
/// `shape` has already established that the only signature is the Response's own.
pub(crate) fn verify_response_signature(
    xml: &str,
    expect: &ResponseExpectations<'_>,
) -> Result<()> {
    let sp = service_provider(expect)?;
    let certs: Vec<CertificateDer> =
        expect.idp_certs.iter().map(|der| CertificateDer::from(der.clone())).collect();
    let allowed = sp.allowed_signature_algorithms.clone();
    guarded(|| {
        Crypto::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &certs,
            ReduceMode::ValidateAndMarkNoAncestors,
            allowed.as_deref(),
        )
    })?
    .map(|_| ())
    .map_err(|_| SamlError::BadSignature("xmlsec did not verify the Response".into()))
}
