//! Scope rules outside the authorization request: narrowing on refresh (RFC 6749 §6), what a
//! client_credentials token may carry (RFC 6749 §4.4), and whether a stored consent covers a
//! request. Scope values are compared byte for byte (RFC 6749 §3.3: case-sensitive).

use crate::{ErrorCode, OAuthError, SCOPE_OFFLINE_ACCESS, SCOPE_OPENID};

/// The scopes of a refreshed token: the requested ones when they are all part of the original
/// grant, the whole grant when none were requested. Asking for anything else is
/// `invalid_scope`, never a silent cut.
pub fn narrow_on_refresh(
    requested: Option<Vec<String>>,
    granted: Vec<String>,
) -> Result<Vec<String>, OAuthError> {
    match requested {
        None => Ok(granted),
        Some(requested) => {
            check_within(&requested, &granted)?;
            Ok(requested)
        }
    }
}

/// `invalid_scope` unless every requested scope is in `granted`. What the token endpoint checks
/// before it rotates a refresh token, so a refused request costs the client nothing.
pub fn check_within(requested: &[String], granted: &[String]) -> Result<(), OAuthError> {
    if requested.iter().all(|s| granted.contains(s)) {
        Ok(())
    } else {
        Err(OAuthError::new(ErrorCode::InvalidScope, "scope exceeds the original grant"))
    }
}

/// A client_credentials request may ask only for scopes registered for the client, and never
/// for the user scopes `openid` and `offline_access`: there is no user, and no refresh token.
pub fn check_client_credentials(
    requested: &[String],
    allowed: &[String],
) -> Result<(), OAuthError> {
    match requested.iter().find(|s| {
        s.as_str() == SCOPE_OPENID || s.as_str() == SCOPE_OFFLINE_ACCESS || !allowed.contains(s)
    }) {
        None => Ok(()),
        Some(s) => Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope {s:?} is not allowed for this client"),
        )),
    }
}

/// True when a stored consent (`None`: never given, or withdrawn) covers every requested scope.
pub fn consent_covers(granted: Option<&[String]>, requested: &[String]) -> bool {
    granted.is_some_and(|g| requested.iter().all(|s| g.contains(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn refresh_may_narrow_but_never_widen() {
        let granted = v(&["openid", "email", "offline_access"]);
        let narrow = |r: Option<Vec<String>>| narrow_on_refresh(r, granted.clone());
        assert_eq!(narrow(None), Ok(granted.clone()));
        assert_eq!(narrow(Some(v(&["openid"]))), Ok(v(&["openid"])));
        assert_eq!(narrow(Some(granted.clone())), Ok(granted.clone()));
        // Asking for nothing is a subset too: a token without scopes.
        assert_eq!(narrow(Some(vec![])), Ok(vec![]));
        for wider in [
            v(&["openid", "profile"]),
            v(&["OPENID"]),
            v(&["openid "]),
            v(&["email", "organization"]),
            v(&[""]),
            v(&["openid email"]),
        ] {
            assert_eq!(
                narrow(Some(wider.clone())).map_err(|e| e.code),
                Err(ErrorCode::InvalidScope),
                "{wider:?}"
            );
        }
        assert!(check_within(&v(&["openid"]), &[]).is_err());
        assert!(check_within(&[], &[]).is_ok());
    }

    #[test]
    fn client_credentials_never_carry_user_scopes() {
        let allowed = v(&["reports:read", "openid", "offline_access"]);
        assert!(check_client_credentials(&[], &allowed).is_ok());
        assert!(check_client_credentials(&v(&["reports:read"]), &allowed).is_ok());
        for bad in [
            v(&["openid"]),
            v(&["offline_access"]),
            v(&["reports:read", "admin"]),
            v(&["Reports:read"]),
            v(&["reports:read "]),
        ] {
            assert_eq!(
                check_client_credentials(&bad, &allowed).map_err(|e| e.code),
                Err(ErrorCode::InvalidScope),
                "{bad:?}"
            );
        }
        assert!(check_client_credentials(&v(&["reports:read"]), &[]).is_err());
    }

    #[test]
    fn consent_must_cover_every_requested_scope() {
        let asked = v(&["openid", "email"]);
        assert!(!consent_covers(None, &asked));
        assert!(!consent_covers(Some(&[]), &asked));
        assert!(!consent_covers(Some(&v(&["openid"])), &asked));
        assert!(!consent_covers(Some(&v(&["openid", "Email"])), &asked));
        assert!(consent_covers(Some(&v(&["email", "openid", "profile"])), &asked));
        assert!(consent_covers(Some(&[]), &[]));
    }
}
