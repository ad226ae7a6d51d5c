//! Why an EASIE rule said no. Every variant has a stable snake_case reason code
//! ([`Refusal::reason`]) for the audit log and metric labels; the display text is a message for
//! operators and support, never proof of anything to the browser.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    // Values given by the operator or the caller.
    #[error("unknown upstream provider {0:?} (expected google or microsoft)")]
    UnknownProvider(String),
    #[error("not a Microsoft tenant ID (a GUID such as 9188040d-6c67-4c5b-b112-36a304b66dad)")]
    InvalidTenantId,
    #[error("not a usable Microsoft authority URL: {0}")]
    InvalidAuthority(&'static str),
    #[error("not a valid domain name such as example.com")]
    InvalidDomain,
    #[error("not a valid email address")]
    InvalidEmail,
    #[error("the {0} setting is out of range: {1}")]
    InvalidSetting(&'static str, &'static str),

    // The ID token's claims.
    #[error("the ID token's claims are malformed: {0}")]
    ClaimsMalformed(String),
    #[error("the ID token was issued to another client (azp)")]
    AzpMismatch,
    #[error("the ID token says it was issued in the future (iat)")]
    IssuedInFuture,
    #[error("the ID token has no issuer")]
    IssMissing,
    #[error("the ID token has no subject")]
    SubMissing,
    #[error("the Google account belongs to no Google Workspace (no hd claim)")]
    HdMissing,
    #[error("the hd claim is not a valid domain name")]
    HdInvalid,
    #[error("the Google Workspace domain (hd) is not the enrolled domain")]
    HdMismatch,
    #[error("the ID token carries no email address")]
    EmailMissing,
    #[error("the ID token's email claim is not a valid address")]
    EmailInvalid,
    #[error("the upstream provider has not verified the email address")]
    EmailUnverified,
    #[error("the email address is not in the enrolled domain")]
    EmailOutsideDomain,
    #[error("sub-addressed email (+, = or #) is refused on an enrolled domain")]
    SubAddressing,
    #[error("the ID token has no tenant ID (tid)")]
    TidMissing,
    #[error("the ID token's tenant ID (tid) is not a GUID")]
    TidInvalid,
    #[error("the account belongs to another Microsoft tenant than the one enrolled")]
    TenantMismatch,
    #[error("personal Microsoft accounts (the consumer tenant) cannot sign in here")]
    ConsumerTenant,
    #[error("the ID token's issuer is not the tenant's issuer")]
    IssuerMismatch,
    #[error("the ID token has no object ID (oid)")]
    OidMissing,
    #[error("the ID token's object ID (oid) is not a GUID")]
    OidInvalid,
    #[error("guest accounts of the tenant cannot sign in to the enrolled organisation")]
    GuestAccount,
    #[error("the acct claim is neither 0 (member) nor 1 (guest)")]
    AcctMalformed,

    // Classification of a sign-in against the enrolled domains.
    #[error("the domain is enrolled with the other sign-in provider")]
    OtherProviderForEnrolledDomain,
    #[error("a personal account cannot sign in with an address on an enrolled domain")]
    ConsumerAccountOnEnrolledDomain,
    #[error("the Microsoft enrollment has no pinned tenant")]
    TenantNotPinned,

    // Microsoft tenant discovery.
    #[error("the OpenID configuration is malformed: {0}")]
    DiscoveryMalformed(&'static str),
    #[error("the OpenID configuration's issuer is not a tenant issuer under the authority")]
    DiscoveryIssuerMismatch,

    // Security event tokens (RISC).
    #[error("the security event token is malformed: {0}")]
    SetMalformed(String),
    #[error("the security event token has no jti")]
    JtiMissing,
    #[error("the security event token is not addressed to this client")]
    AudMismatch,
    #[error("the security event token's iat is missing or in the future")]
    IatInvalid,
    #[error("the security event token is older than accepted")]
    SetTooOld,
    #[error("a security event is malformed: {0}")]
    EventMalformed(String),
}

impl Refusal {
    /// The stable reason code for audit events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownProvider(_) => "unknown_provider",
            Self::InvalidTenantId => "invalid_tenant_id",
            Self::InvalidAuthority(_) => "invalid_authority",
            Self::InvalidDomain => "invalid_domain",
            Self::InvalidEmail => "invalid_email",
            Self::InvalidSetting(..) => "invalid_setting",
            Self::ClaimsMalformed(_) => "claims_malformed",
            Self::AzpMismatch => "azp_mismatch",
            Self::IssuedInFuture => "id_token_issued_in_future",
            Self::IssMissing => "iss_missing",
            Self::SubMissing => "sub_missing",
            Self::HdMissing => "hd_missing",
            Self::HdInvalid => "hd_invalid",
            Self::HdMismatch => "hd_mismatch",
            Self::EmailMissing => "email_missing",
            Self::EmailInvalid => "email_invalid",
            Self::EmailUnverified => "email_unverified",
            Self::EmailOutsideDomain => "email_outside_domain",
            Self::SubAddressing => "sub_addressing",
            Self::TidMissing => "tid_missing",
            Self::TidInvalid => "tid_invalid",
            Self::TenantMismatch => "tenant_mismatch",
            Self::ConsumerTenant => "consumer_tenant",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::OidMissing => "oid_missing",
            Self::OidInvalid => "oid_invalid",
            Self::GuestAccount => "guest_account",
            Self::AcctMalformed => "acct_malformed",
            Self::OtherProviderForEnrolledDomain => "other_provider_for_enrolled_domain",
            Self::ConsumerAccountOnEnrolledDomain => "consumer_account_on_enrolled_domain",
            Self::TenantNotPinned => "tenant_not_pinned",
            Self::DiscoveryMalformed(_) => "discovery_malformed",
            Self::DiscoveryIssuerMismatch => "discovery_issuer_mismatch",
            Self::SetMalformed(_) => "set_malformed",
            Self::JtiMissing => "jti_missing",
            Self::AudMismatch => "aud_mismatch",
            Self::IatInvalid => "iat_invalid",
            Self::SetTooOld => "set_too_old",
            Self::EventMalformed(_) => "event_malformed",
        }
    }

    /// The human message (the same text as `Display`), for operators and support.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn reasons_are_snake_case_and_distinct() {
        let all = [
            Refusal::UnknownProvider("x".into()),
            Refusal::InvalidTenantId,
            Refusal::InvalidAuthority("x"),
            Refusal::InvalidDomain,
            Refusal::InvalidEmail,
            Refusal::InvalidSetting("x", "y"),
            Refusal::ClaimsMalformed("x".into()),
            Refusal::AzpMismatch,
            Refusal::IssuedInFuture,
            Refusal::IssMissing,
            Refusal::SubMissing,
            Refusal::HdMissing,
            Refusal::HdInvalid,
            Refusal::HdMismatch,
            Refusal::EmailMissing,
            Refusal::EmailInvalid,
            Refusal::EmailUnverified,
            Refusal::EmailOutsideDomain,
            Refusal::SubAddressing,
            Refusal::TidMissing,
            Refusal::TidInvalid,
            Refusal::TenantMismatch,
            Refusal::ConsumerTenant,
            Refusal::IssuerMismatch,
            Refusal::OidMissing,
            Refusal::OidInvalid,
            Refusal::GuestAccount,
            Refusal::AcctMalformed,
            Refusal::OtherProviderForEnrolledDomain,
            Refusal::ConsumerAccountOnEnrolledDomain,
            Refusal::TenantNotPinned,
            Refusal::DiscoveryMalformed("x"),
            Refusal::DiscoveryIssuerMismatch,
            Refusal::SetMalformed("x".into()),
            Refusal::JtiMissing,
            Refusal::AudMismatch,
            Refusal::IatInvalid,
            Refusal::SetTooOld,
            Refusal::EventMalformed("x".into()),
        ];
        let mut seen = std::collections::HashSet::new();
        for r in &all {
            let reason = r.reason();
            assert!(reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{reason}");
            assert!(seen.insert(reason), "duplicate reason {reason}");
            assert!(!r.message().is_empty());
        }
    }
}
