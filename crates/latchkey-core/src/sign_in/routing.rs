//! Identifier-first routing: the sign-in page asks for the address first, and its domain decides
//! the method. An organisation that verified the domain and enabled an enterprise connection for
//! it sends its members there; a few listed addresses (break-glass administrators) may keep
//! their password. Each connection protocol implements [`ConnectionRegistry`]; the answer never
//! depends on whether an account exists, only on the domain.

use std::{future::Future, pin::Pin};

use serde::Serialize;

use super::SignInService;
use crate::{Result, infra::email::normalize_email, tenancy::domains};

/// How a person with a given address signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SignInRoute {
    Password,
    /// Through the organisation's identity provider.
    Enterprise {
        connection: EnterpriseConnection,
    },
}

/// An enabled enterprise connection that an organisation requires for a verified domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnterpriseConnection {
    pub id: String,
    pub org_id: String,
    /// `saml` or `easie`.
    pub protocol: String,
    pub name: String,
    /// Where the browser starts the sign-in (a path of ours, given `login_hint` and
    /// `return_to`).
    pub start_path: String,
    /// Addresses on the domain that may still sign in with a password.
    pub bypass: Vec<String>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connection protocol's part in routing.
pub trait ConnectionRegistry: Send + Sync {
    /// The enabled connection of `org_id` that addresses on `domain` must use, if this protocol
    /// has one.
    fn connection_for<'a>(
        &'a self,
        org_id: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<EnterpriseConnection>>>;
}

/// The route for a normalised address given the connection its domain requires (if any): the
/// connection, unless the address is on its bypass list.
pub fn route(email: &str, connection: Option<EnterpriseConnection>) -> SignInRoute {
    match connection {
        Some(c) if !c.bypass.iter().any(|b| b.eq_ignore_ascii_case(email)) => {
            SignInRoute::Enterprise { connection: c }
        }
        _ => SignInRoute::Password,
    }
}

impl SignInService {
    /// How this address signs in. Invalid addresses are an input error; the answer depends on
    /// the domain only, never on whether an account exists.
    pub async fn route(&self, email: &str) -> Result<SignInRoute> {
        let email = normalize_email(email)?;
        Ok(route(&email, self.required_connection(&email).await?))
    }

    /// The enterprise connection that an address's verified domain requires, if any.
    async fn required_connection(&self, email: &str) -> Result<Option<EnterpriseConnection>> {
        let Some((_, domain)) = email.rsplit_once('@') else { return Ok(None) };
        let registries: Vec<_> = match self.registries.read() {
            Ok(list) if !list.is_empty() => list.clone(),
            // No protocol is registered: skip the domain lookup.
            _ => return Ok(None),
        };
        let Some(org_id) = domains::verified_owner(self.store.db(), domain).await? else {
            return Ok(None);
        };
        for registry in registries {
            if let Some(c) = registry.connection_for(&org_id, domain).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Refuses a password-based step (sign-in, sign-up, reset) for an address its organisation
    /// sends through an enterprise connection.
    pub(crate) async fn require_password_route(&self, email: &str) -> Result<()> {
        let connection = self.required_connection(email).await?;
        let connection_id = connection.as_ref().map(|c| c.id.clone());
        match route(email, connection) {
            SignInRoute::Password => {
                // A break-glass address kept its password: every use is on record.
                if let Some(id) = connection_id {
                    let data = serde_json::json!({ "email": email });
                    let (now, actor) = (self.store.now(), crate::infra::audit::Actor::system());
                    crate::infra::audit::record(
                        self.store.db(),
                        now,
                        &actor,
                        "sign_in.bypass_used",
                        Some(&id),
                        data,
                    )
                    .await?;
                }
                Ok(())
            }
            SignInRoute::Enterprise { .. } => Err(crate::Error::Forbidden(
                "this address signs in through its organisation's identity provider".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(bypass: &[&str]) -> EnterpriseConnection {
        EnterpriseConnection {
            id: "con_1".into(),
            org_id: "org_1".into(),
            protocol: "saml".into(),
            name: "Okta".into(),
            start_path: "/saml/con_1/start".into(),
            bypass: bypass.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn a_required_connection_wins_unless_the_address_is_bypassed() {
        assert_eq!(route("ada@example.com", None), SignInRoute::Password);
        assert_eq!(
            route("ada@example.com", Some(connection(&[]))),
            SignInRoute::Enterprise { connection: connection(&[]) }
        );
        let bypassed = connection(&["Root@Example.com"]);
        assert_eq!(route("root@example.com", Some(bypassed.clone())), SignInRoute::Password);
        assert!(matches!(route("ada@example.com", Some(bypassed)), SignInRoute::Enterprise { .. }));
    }
}
