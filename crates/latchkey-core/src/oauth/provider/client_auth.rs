//! Client authentication at the token, introspection and revocation endpoints: secrets
//! (basic/post), `private_key_jwt` (RFC 7523) and `none` for public clients. Every refusal is
//! `invalid_client`; the reason is logged, not sent. Authentication does not write: the
//! assertion's `jti` is recorded by [`ClientAuth::confirm`] once the request itself has passed
//! its checks, so a refused request does not use the assertion up.

use std::sync::Arc;

use latchkey_oidc::{
    ClientAuthMethod, OAuthError,
    assertion::{self, Expected},
    token::ClientCredentials,
};

use super::{OAuthFailure, OAuthResult, OidcService};
use crate::oauth::{OAuthService, clients::Client};

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Callers {
    /// Confidential and public clients (token, revocation).
    Any,
    /// Confidential clients only: RFC 7662 §2.1 does not let public clients probe tokens.
    Confidential,
}

fn reject(reason: &str) -> OAuthFailure {
    tracing::info!(reason, "client authentication failed");
    OAuthFailure::Refused(OAuthError::invalid_client("client authentication failed"))
}

/// An authenticated client. A `private_key_jwt` client is authenticated up to the replay check
/// of its assertion, which [`Self::confirm`] makes.
pub(super) struct ClientAuth {
    pub client: Arc<Client>,
    /// The assertion's `jti` and `exp`, to record against replay.
    pending_jti: Option<(String, i64)>,
}

impl ClientAuth {
    /// Records the assertion's `jti` (nothing for other methods). The last step of
    /// authentication and the first write of a request: call it after every check of the
    /// request and before its other writes. A replay is `invalid_client`; a store failure is a
    /// server error, not a replay.
    pub async fn confirm(&self, grants: &OAuthService) -> OAuthResult<()> {
        if let Some((jti, exp)) = &self.pending_jti
            && !grants.remember_jti(&self.client.client_id, jti, *exp).await?
        {
            return Err(reject("assertion replayed (jti seen before)"));
        }
        Ok(())
    }
}

impl OidcService {
    /// Authenticates the calling client. `revision` is the store revision read after the request
    /// arrived: clients and their secrets come from memory unless they changed since.
    pub(super) async fn authenticate(
        &self,
        creds: &ClientCredentials,
        callers: Callers,
        revision: i64,
    ) -> OAuthResult<ClientAuth> {
        let client = match creds {
            ClientCredentials::Basic { client_id, secret }
            | ClientCredentials::Post { client_id, secret } => {
                let client = self.find_client(client_id, revision).await?;
                if client.token_endpoint_auth_method != creds.method().as_str() {
                    return Err(reject("auth method not registered for client"));
                }
                if !self.clients.verify_secret_at(client_id, secret, revision).await? {
                    return Err(reject("wrong client secret"));
                }
                client
            }
            ClientCredentials::None { client_id } => {
                let client = self.find_client(client_id, revision).await?;
                if !client.is_public()
                    || client.token_endpoint_auth_method != ClientAuthMethod::None.as_str()
                {
                    return Err(reject("confidential client without credentials"));
                }
                if callers == Callers::Confidential {
                    return Err(reject("public clients may not call this endpoint"));
                }
                client
            }
            ClientCredentials::Assertion { client_id, assertion } => {
                return self.verify_assertion(client_id.as_deref(), assertion, revision).await;
            }
        };
        Ok(ClientAuth { client, pending_jti: None })
    }

    async fn find_client(&self, client_id: &str, revision: i64) -> OAuthResult<Arc<Client>> {
        self.clients.find_at(client_id, revision).await?.ok_or_else(|| reject("unknown client"))
    }

    /// RFC 7523 §3: signed by one of the client's registered keys with an asymmetric algorithm
    /// (`alg: none` and HMAC never verify), then the claim checks of
    /// [`latchkey_oidc::assertion::check`].
    async fn verify_assertion(
        &self,
        form_client_id: Option<&str>,
        assertion: &str,
        revision: i64,
    ) -> OAuthResult<ClientAuth> {
        // The claimed issuer only says whose keys to try; nothing is trusted before verification.
        let claimed = assertion::claimed_issuer(assertion)
            .ok_or_else(|| reject("malformed assertion, or no iss"))?;
        if form_client_id.is_some_and(|id| id != claimed) {
            return Err(reject("client_id does not match the assertion"));
        }
        let client = self.find_client(&claimed, revision).await?;
        if client.token_endpoint_auth_method != ClientAuthMethod::PrivateKeyJwt.as_str() {
            return Err(reject("client is not registered for private_key_jwt"));
        }
        let jwks = client.jwks.as_ref().ok_or_else(|| reject("client has no keys"))?;
        let (_, claims) = crate::infra::jose::verify_with_jwks(assertion, jwks)
            .map_err(|_| reject("assertion signature not valid"))?;
        let expected = Expected {
            client_id: &client.client_id,
            issuer: &self.issuer,
            token_endpoint: &self.token_endpoint,
            now: self.store.now(),
        };
        let accepted = assertion::check(&claims, &expected).map_err(reject)?;
        let pending_jti = Some((accepted.jti.to_owned(), accepted.exp));
        Ok(ClientAuth { client, pending_jti })
    }
}
