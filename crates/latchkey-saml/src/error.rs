//! Why a SAML message was refused. Every variant has a stable reason code ([`SamlError::reason`])
//! that the audit log and the metrics carry; the display text is for operators, never for the
//! browser (the error page shows a reference ID instead).

use thiserror::Error;

pub type Result<T> = std::result::Result<T, SamlError>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SamlError {
    #[error("the message is larger than allowed")]
    TooLarge,
    #[error("the message is not valid base64")]
    Base64,
    #[error("the message could not be inflated")]
    Inflate,
    #[error("the message is not well-formed: {0}")]
    Malformed(String),
    #[error("the message carries a DOCTYPE declaration")]
    Doctype,
    #[error("the message is not signed")]
    Unsigned,
    #[error("the signature does not verify: {0}")]
    BadSignature(String),
    #[error("signature or digest algorithm not allowed: {0}")]
    AlgorithmNotAllowed(String),
    #[error("the signed content is ambiguous (signature wrapping): {0}")]
    Wrapping(String),
    #[error("unexpected issuer {0:?}")]
    Issuer(String),
    #[error("unexpected Destination {0:?}")]
    Destination(String),
    #[error("unexpected SubjectConfirmationData Recipient {0:?}")]
    Recipient(String),
    #[error("the audience does not include this service provider")]
    Audience,
    #[error("status is not Success: {0}")]
    Status(String),
    #[error("the assertion or message has expired")]
    Expired,
    #[error("the assertion or message is not valid yet")]
    NotYetValid,
    #[error("the assertion has no Conditions")]
    NoConditions,
    #[error("the assertion has no AudienceRestriction")]
    NoAudienceRestriction,
    #[error("the assertion has no bearer SubjectConfirmation with NotOnOrAfter")]
    NoBearerConfirmation,
    #[error("InResponseTo is missing from the answer to our request")]
    InResponseToMissing,
    #[error("InResponseTo does not match the request this browser started")]
    InResponseToMismatch,
    #[error("an unsolicited response carries InResponseTo")]
    UnsolicitedWithInResponseTo,
    #[error("unsolicited (IdP-initiated) responses are not allowed on this connection")]
    Unsolicited,
    #[error("this connection requires encrypted assertions")]
    EncryptionRequired,
    #[error("the encrypted assertion could not be decrypted: {0}")]
    Decryption(String),
    #[error("the assertion names no usable subject: {0}")]
    NoSubject(String),
    #[error("the metadata is not usable: {0}")]
    Metadata(String),
    #[error("the metadata carries no signing certificate")]
    NoSigningCertificate,
    #[error("key or certificate error: {0}")]
    Key(String),
    #[error("internal SAML error: {0}")]
    Internal(String),
}

impl SamlError {
    /// The stable reason code for audit events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Base64 => "bad_base64",
            Self::Inflate => "bad_deflate",
            Self::Malformed(_) => "malformed",
            Self::Doctype => "doctype",
            Self::Unsigned => "unsigned",
            Self::BadSignature(_) => "bad_signature",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::Wrapping(_) => "signature_wrapping",
            Self::Issuer(_) => "issuer_mismatch",
            Self::Destination(_) => "destination_mismatch",
            Self::Recipient(_) => "recipient_mismatch",
            Self::Audience => "audience_mismatch",
            Self::Status(_) => "status_not_success",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::NoConditions => "no_conditions",
            Self::NoAudienceRestriction => "no_audience_restriction",
            Self::NoBearerConfirmation => "no_bearer_confirmation",
            Self::InResponseToMissing => "in_response_to_missing",
            Self::InResponseToMismatch => "in_response_to_mismatch",
            Self::UnsolicitedWithInResponseTo => "unsolicited_with_in_response_to",
            Self::Unsolicited => "unsolicited_not_allowed",
            Self::EncryptionRequired => "encryption_required",
            Self::Decryption(_) => "decryption_failed",
            Self::NoSubject(_) => "no_subject",
            Self::Metadata(_) => "bad_metadata",
            Self::NoSigningCertificate => "no_signing_certificate",
            Self::Key(_) => "bad_key",
            Self::Internal(_) => "internal",
        }
    }
}
