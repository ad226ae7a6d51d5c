//! The protocol's registered names that Latchkey supports, defined once: grant types (RFC 6749
//! §4, as stored with a client and advertised by discovery) and token-endpoint client
//! authentication methods (OIDC Core §9, RFC 7591 §2).

/// A grant type a client may be registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    /// Every supported grant type, in the order discovery lists them.
    pub const ALL: [Self; 3] =
        [Self::AuthorizationCode, Self::RefreshToken, Self::ClientCredentials];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    /// Exact match only: grant type names are case-sensitive.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The grant types of a client registered without any.
    pub const DEFAULT: [Self; 2] = [Self::AuthorizationCode, Self::RefreshToken];

    /// Grants that issue tokens for a user (and so carry the user's session and templates).
    pub const fn is_user_grant(self) -> bool {
        matches!(self, Self::AuthorizationCode | Self::RefreshToken)
    }
}

/// How a client authenticates at the token, introspection and revocation endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A public client that only names itself.
    None,
}

impl ClientAuthMethod {
    /// Every supported method, in the order discovery lists them.
    pub const ALL: [Self; 4] =
        [Self::ClientSecretBasic, Self::ClientSecretPost, Self::PrivateKeyJwt, Self::None];

    /// What a confidential client uses unless registered otherwise.
    pub const CONFIDENTIAL_DEFAULT: Self = Self::ClientSecretBasic;

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }

    /// Exact match only.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Methods that prove possession of a secret or key: everything but `none`.
    pub const fn is_confidential(self) -> bool {
        !matches!(self, Self::None)
    }

    /// Methods that present a shared secret (which the registry then stores hashed).
    pub const fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

/// The supported grant types' names, for discovery.
pub fn grant_type_names() -> [&'static str; 3] {
    GrantType::ALL.map(GrantType::as_str)
}

/// The supported client authentication methods' names, for discovery.
pub fn auth_method_names() -> [&'static str; 4] {
    ClientAuthMethod::ALL.map(ClientAuthMethod::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        for m in ClientAuthMethod::ALL {
            assert_eq!(ClientAuthMethod::parse(m.as_str()), Some(m));
        }
        for bad in ["", "password", "implicit", "Authorization_Code", "refresh_token ", "none\0"] {
            assert_eq!(GrantType::parse(bad), None, "{bad:?}");
        }
        for bad in ["", "client_secret_jwt", "NONE", "tls_client_auth", " private_key_jwt"] {
            assert_eq!(ClientAuthMethod::parse(bad), None, "{bad:?}");
        }
        assert!(!ClientAuthMethod::None.is_confidential());
        assert!(ClientAuthMethod::PrivateKeyJwt.is_confidential());
        assert!(!ClientAuthMethod::PrivateKeyJwt.uses_secret());
        assert!(GrantType::RefreshToken.is_user_grant());
        assert!(!GrantType::ClientCredentials.is_user_grant());
        assert_eq!(
            grant_type_names(),
            ["authorization_code", "refresh_token", "client_credentials"]
        );
    }
}
