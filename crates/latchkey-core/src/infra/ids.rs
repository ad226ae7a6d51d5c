//! Opaque, prefixed, URL-safe identifiers (`usr_01j…`). ULIDs keep them time-ordered, which
//! keeps B-tree inserts local on both SQLite and PostgreSQL.

pub const USER: &str = "usr";
pub const USER_EMAIL: &str = "eml";
pub const EMAIL_VERIFICATION: &str = "emv";
pub const SESSION: &str = "ses";
pub const ORGANISATION: &str = "org";
pub const MEMBERSHIP: &str = "mem";
pub const AUDIT_EVENT: &str = "evt";
pub const SIGNING_KEY: &str = "key";
pub const MAIL: &str = "mail";
pub const INVITATION: &str = "inv";
pub const ORG_DOMAIN: &str = "dom";
pub const JOIN_REQUEST: &str = "jrq";
pub const OAUTH_CLIENT: &str = "client";
pub const OAUTH_CLIENT_SECRET: &str = "csec";
pub const OAUTH_CODE: &str = "acd";
pub const REFRESH_TOKEN: &str = "rtk";
pub const CONSENT: &str = "cns";
pub const BACKCHANNEL_LOGOUT: &str = "bcl";
pub const JWT_TEMPLATE: &str = "jtpl";
pub const SIGN_UP_ATTEMPT: &str = "sua";
pub const PASSWORD_RESET: &str = "pwr";
/// An access token's `jti`.
pub const ACCESS_TOKEN: &str = "at";
pub const EXTERNAL_IDENTITY: &str = "ext";
pub const SAML_CONNECTION: &str = "con";
pub const SAML_SP_KEY: &str = "spk";
/// EASIE connections share the SAML prefix: `connections show con_…` finds either kind.
pub const EASIE_CONNECTION: &str = "con";
pub const UPSTREAM_GRANT: &str = "upg";
/// Reference IDs shown on error pages and recorded with the refusal.
pub const REFERENCE: &str = "ref";
pub const PENDING_REQUEST: &str = "pnd";
/// The token of one claim on a job (not stored as a row of its own).
pub const JOB_CLAIM: &str = "claim";
/// Background jobs other than mail (`mail_`) and logout notifications (`bcl_`).
pub const JOB: &str = "job";
pub const API_KEY: &str = "apk";

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new().to_string().to_ascii_lowercase())
}

/// True when `id` looks like one of ours with the given prefix; used to reject junk early.
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == 26 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = new_id(USER);
        let b = new_id(USER);
        assert!(a.starts_with("usr_"));
        assert_ne!(a, b);
        assert!(is_valid(USER, &a));
        assert!(!is_valid(SESSION, &a));
        assert!(!is_valid(USER, "usr_../../etc"));
    }
}
