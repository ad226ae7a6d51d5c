//! OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414).

use serde_json::{Value, json};

use crate::{ClientAuthMethod, SUPPORTED_SCOPES, auth_method_names, grant_type_names};

/// The token endpoint's URL: also an audience a client assertion may name (RFC 7523 §3).
pub fn token_endpoint(issuer: &str) -> String {
    format!("{}/oauth2/token", issuer.trim_end_matches('/'))
}

/// The discovery document. `issuer` is used byte for byte (no trailing slash added or removed):
/// relying parties compare it exactly with the `iss` of every token. `algs` are the signing
/// algorithms Latchkey signs ID tokens with and verifies client assertions with, the default
/// first.
pub fn document(issuer: &str, algs: &[&str]) -> Value {
    let base = issuer.trim_end_matches('/');
    // Introspection is for confidential callers only (RFC 7662 §2.1).
    let introspection_methods: Vec<&str> = ClientAuthMethod::ALL
        .into_iter()
        .filter(|m| m.is_confidential())
        .map(ClientAuthMethod::as_str)
        .collect();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": token_endpoint(issuer),
        "userinfo_endpoint": format!("{base}/oauth2/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "end_session_endpoint": format!("{base}/oauth2/logout"),
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_type_names(),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": auth_method_names(),
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": auth_method_names(),
        "introspection_endpoint_auth_methods_supported": introspection_methods,
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp",
            "at_hash", "email", "email_verified", "name", "given_name", "family_name", "picture",
            "updated_at", "org_id", "org_role"
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_is_kept_exactly_and_rs256_is_offered() {
        let d = document("http://127.0.0.1:8080", &["RS256", "ES256", "EdDSA"]);
        assert_eq!(d["issuer"], "http://127.0.0.1:8080");
        assert_eq!(d["token_endpoint"], "http://127.0.0.1:8080/oauth2/token");
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(d["id_token_signing_alg_values_supported"][0], "RS256");
        assert_eq!(
            d["grant_types_supported"],
            json!(["authorization_code", "refresh_token", "client_credentials"])
        );
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
        );
        assert_eq!(
            d["introspection_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "private_key_jwt"])
        );
        assert_eq!(
            d["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS256", "ES256", "EdDSA"])
        );
        let d = document("https://id.example/tenant/", &["RS256"]);
        assert_eq!(d["issuer"], "https://id.example/tenant/");
        assert_eq!(d["jwks_uri"], "https://id.example/tenant/.well-known/jwks.json");
        assert_eq!(d["token_endpoint"], "https://id.example/tenant/oauth2/token");
        assert_eq!(token_endpoint("https://id.example/tenant/"), d["token_endpoint"]);
    }
}
