//! Pinning a Microsoft tenant at enrollment. When the operator gives only the domain, the
//! caller fetches `{authority}/{domain}/v2.0/.well-known/openid-configuration` (see
//! [`Authority::discovery_url`]) and the tenant is read from its `issuer`, which for a work
//! tenant is `{authority}/{tid}/v2.0`. A domain Microsoft does not know answers with an error
//! document; a consumer domain resolves to the consumer tenant; both are refused.

use serde_json::Value;

use crate::{
    provider::{Authority, TenantId},
    refusal::Refusal,
};

/// The tenant ID named by a tenant's OpenID configuration document.
pub fn tenant_from_openid_configuration(
    json: &str,
    authority: &Authority,
) -> Result<TenantId, Refusal> {
    let doc: Value =
        serde_json::from_str(json).map_err(|_| Refusal::DiscoveryMalformed("not JSON"))?;
    let doc = doc.as_object().ok_or(Refusal::DiscoveryMalformed("not a JSON object"))?;
    let issuer = match doc.get("issuer") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Refusal::DiscoveryMalformed("issuer is not a string")),
        None => return Err(Refusal::DiscoveryMalformed("no issuer")),
    };
    let tid = issuer
        .strip_prefix(authority.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_suffix("/v2.0"))
        .ok_or(Refusal::DiscoveryIssuerMismatch)?;
    // Exactly the lower-case form, so that the issuer built from the pinned tenant later
    // equals this one byte for byte.
    let tid = TenantId::parse(tid)
        .ok()
        .filter(|t| t.as_str() == tid)
        .ok_or(Refusal::DiscoveryIssuerMismatch)?;
    if tid.is_consumer() {
        return Err(Refusal::ConsumerTenant);
    }
    Ok(tid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::CONSUMER_TENANT_ID;
    use serde_json::json;

    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn config(issuer: Value) -> String {
        json!({
            "token_endpoint": format!("https://login.microsoftonline.com/{TID}/oauth2/v2.0/token"),
            "jwks_uri": format!("https://login.microsoftonline.com/{TID}/discovery/v2.0/keys"),
            "issuer": issuer,
            "tenant_region_scope": "EU",
        })
        .to_string()
    }

    fn tenant(issuer: Value) -> Result<TenantId, Refusal> {
        tenant_from_openid_configuration(&config(issuer), &Authority::default())
    }

    #[test]
    fn the_tenant_is_read_from_the_issuer() {
        let issuer = format!("https://login.microsoftonline.com/{TID}/v2.0");
        assert_eq!(tenant(json!(issuer)).unwrap().as_str(), TID);
        let local = Authority::parse("http://127.0.0.1:9000/ms/").unwrap();
        let doc = json!({"issuer": format!("http://127.0.0.1:9000/ms/{TID}/v2.0")}).to_string();
        assert_eq!(tenant_from_openid_configuration(&doc, &local).unwrap().as_str(), TID);
    }

    #[test]
    fn anything_else_is_refused() {
        let reason = |issuer: Value| tenant(issuer).unwrap_err().reason();
        let ms = "https://login.microsoftonline.com";
        assert_eq!(reason(json!(format!("{ms}/{CONSUMER_TENANT_ID}/v2.0"))), "consumer_tenant");
        for bad in [
            format!("{ms}/{{tenantid}}/v2.0"),
            format!("{ms}/common/v2.0"),
            format!("{ms}/{TID}/v2.0/"),
            format!("{ms}/{TID}"),
            format!("{ms}/{}/v2.0", TID.to_uppercase()),
            format!("{ms}//{TID}/v2.0"),
            format!("https://sts.windows.net/{TID}/"),
            format!("https://login.microsoftonline.com.evil.io/{TID}/v2.0"),
            format!("{ms}/{TID}/x/v2.0"),
        ] {
            assert_eq!(reason(json!(bad)), "discovery_issuer_mismatch", "{bad}");
        }
        assert_eq!(reason(json!(5)), "discovery_malformed");
        assert_eq!(reason(json!(null)), "discovery_malformed");
        let a = Authority::default();
        for doc in ["", "[]", "{", r#"{"error":"invalid_tenant"}"#] {
            assert_eq!(
                tenant_from_openid_configuration(doc, &a).unwrap_err().reason(),
                "discovery_malformed",
                "{doc}"
            );
        }
    }
}
