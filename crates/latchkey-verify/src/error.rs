//! Why a token was refused, and how that maps onto RFC 6750 §3.1 error codes.

/// A refusal. Every variant except [`VerifyError::MissingToken`],
/// [`VerifyError::InsufficientScope`] and [`VerifyError::KeysUnavailable`] means "this token is
/// not acceptable" and maps to `invalid_token`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No token was sent (RFC 6750 §3.1: the challenge then carries no error code).
    #[error("no bearer token")]
    MissingToken,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, HMAC, unknown, or disagrees with the key.
    #[error("algorithm not accepted: {0}")]
    Algorithm(&'static str),
    /// No published key has the token's `kid`, even after refreshing the key set.
    #[error("unknown signing key")]
    UnknownKey,
    #[error("signature not valid")]
    Signature,
    #[error("token type not accepted")]
    Type,
    #[error("wrong issuer")]
    Issuer,
    #[error("audience or authorised party not accepted")]
    Audience,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("missing or invalid claim: {0}")]
    Claim(&'static str),
    /// The token is valid but lacks a required scope.
    #[error("insufficient scope")]
    InsufficientScope,
    /// The key set could not be fetched and no usable copy is cached. Not the token's fault:
    /// the middleware answers 503.
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl VerifyError {
    /// The RFC 6750 `error` attribute of the `WWW-Authenticate` challenge; `None` when no token
    /// was sent (§3.1: "the resource server SHOULD NOT include an error code") or when the
    /// failure is the server's own.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingToken | Self::KeysUnavailable => None,
            Self::InsufficientScope => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// The HTTP status the resource server answers with (RFC 6750 §3.1).
    pub fn status(&self) -> u16 {
        match self {
            Self::InsufficientScope => 403,
            Self::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// The `WWW-Authenticate` value for this refusal. `realm` is quoted as given (quotes and
    /// backslashes escaped); the description is this error's message.
    pub fn challenge(&self, realm: &str, scope: Option<&str>) -> String {
        let mut out = format!("Bearer realm=\"{}\"", quote(realm));
        if let Some(code) = self.error_code() {
            out.push_str(&format!(
                ", error=\"{code}\", error_description=\"{}\"",
                quote(&self.to_string())
            ));
        }
        if let (Self::InsufficientScope, Some(scope)) = (self, scope) {
            out.push_str(&format!(", scope=\"{}\"", quote(scope)));
        }
        out
    }
}

/// Escapes a quoted-string (RFC 9110 §5.6.4) and drops control characters, which a header
/// cannot carry.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(VerifyError::MissingToken.challenge("api", None), "Bearer realm=\"api\"");
        assert_eq!(
            VerifyError::Expired.challenge("a\"b", None),
            "Bearer realm=\"a\\\"b\", error=\"invalid_token\", error_description=\"token expired\""
        );
        assert_eq!(
            VerifyError::InsufficientScope.challenge("api", Some("read write")),
            "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"read write\""
        );
        assert_eq!(VerifyError::InsufficientScope.status(), 403);
        assert_eq!(VerifyError::Signature.status(), 401);
        assert_eq!(VerifyError::KeysUnavailable.error_code(), None);
    }
}
