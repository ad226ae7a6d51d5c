use std::fmt;

use serde::Serialize;

/// OAuth 2.0 / OpenID Connect error codes (RFC 6749 §4.1.2.1 and §5.2, OIDC Core §3.1.2.6,
/// RFC 6750 §3.1, RFC 8707 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    UnauthorizedClient,
    AccessDenied,
    UnsupportedResponseType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    AccountSelectionRequired,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidToken,
    UnsupportedTokenType,
    /// RFC 8707: the requested resource (audience) is invalid or not allowed for the client.
    InvalidTarget,
    /// RFC 6750 §3.1: the access token is valid but does not carry what the resource needs.
    InsufficientScope,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::AccountSelectionRequired => "account_selection_required",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidToken => "invalid_token",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidTarget => "invalid_target",
            Self::InsufficientScope => "insufficient_scope",
        }
    }

    /// HTTP status for a token-endpoint style JSON error (RFC 6749 §5.2): 401 for failed client
    /// authentication and bad bearer tokens, 500/503 for our own trouble, 400 otherwise.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidClient | Self::InvalidToken => 401,
            Self::InsufficientScope => 403,
            Self::ServerError => 500,
            Self::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// One OAuth error; the web crate renders it (JSON body, redirect or page) in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Human-readable, safe to show to the client developer (never secrets or internals).
    pub description: String,
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self { code, description: description.into() }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// RFC 6749 §5.2 JSON body. `error_description` may only hold %x20-21 / %x23-5B / %x5D-7E.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.code.as_str(),
            "error_description": sanitize_description(&self.description),
        })
    }

    /// The redirect carrying this error back to the client (RFC 6749 §4.1.2.1), with `state`
    /// and the RFC 9207 `iss` parameter. `redirect_uri` must already be verified as registered.
    pub fn redirect_url(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        issuer: &str,
    ) -> Result<String, url::ParseError> {
        let mut url = url::Url::parse(redirect_uri)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("error", self.code.as_str());
            q.append_pair("error_description", &sanitize_description(&self.description));
            if let Some(state) = state {
                q.append_pair("state", state);
            }
            q.append_pair("iss", issuer);
        }
        Ok(url.into())
    }
}

fn sanitize_description(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) && c != '"' && c != '\\' { c } else { ' ' })
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_as_rfc6749_json_and_redirects() {
        let e = OAuthError::invalid_grant("code \"reused\"\n");
        assert_eq!(e.code.http_status(), 400);
        assert_eq!(e.to_json()["error"], "invalid_grant");
        assert_eq!(e.to_json()["error_description"], "code  reused  ");
        assert_eq!(ErrorCode::InvalidClient.http_status(), 401);
        let target = OAuthError::new(ErrorCode::InvalidTarget, "unknown resource");
        assert_eq!(
            (target.code.http_status(), target.to_json()["error"].as_str()),
            (400, Some("invalid_target"))
        );
        let scope = OAuthError::new(ErrorCode::InsufficientScope, "needs users:oauth_tokens");
        assert_eq!(
            (scope.code.http_status(), scope.to_json()["error"].as_str()),
            (403, Some("insufficient_scope"))
        );

        let url = OAuthError::new(ErrorCode::LoginRequired, "sign in")
            .redirect_url("https://rp.example/cb?x=1", Some("a b&c"), "https://id.example")
            .unwrap_or_default();
        assert_eq!(
            url,
            "https://rp.example/cb?x=1&error=login_required&error_description=sign+in&state=a+b%26c&iss=https%3A%2F%2Fid.example"
        );
    }
}
