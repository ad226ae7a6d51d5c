//! Checks a sign-in method adds before any token is minted for its sessions (session tokens,
//! OIDC access and ID tokens). EASIE sessions live only as long as the upstream account, so the
//! upstream module re-validates the account here (`enterprise::upstream::recheck`); the
//! domains to the left of it see only this trait, registered when the services are wired
//! together, like the connection registries of identifier-first routing.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, RwLock},
};

use super::method::AuthMethod;
use crate::Result;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A method's check before minting: `Err(Unauthenticated)` refuses the token.
pub trait MintGate: Send + Sync {
    fn before_mint<'a>(
        &'a self,
        user_id: &'a str,
        method: &'a AuthMethod,
    ) -> BoxFuture<'a, Result<()>>;
}

/// The registered gates, shared by everything that mints.
#[derive(Clone, Default)]
pub struct MintGates(Arc<RwLock<Vec<Arc<dyn MintGate>>>>);

impl MintGates {
    pub fn register(&self, gate: Arc<dyn MintGate>) {
        if let Ok(mut list) = self.0.write() {
            list.push(gate);
        }
    }

    /// Runs the gates for a session signed in with `method`. Only sessions of an
    /// organisation's upstream connection are gated; every other session passes without a
    /// call (the token endpoint's hot path).
    pub async fn check(&self, user_id: &str, method: &AuthMethod) -> Result<()> {
        if !matches!(method, AuthMethod::UpstreamOidc { connection_id: Some(_), .. }) {
            return Ok(());
        }
        let gates: Vec<_> = match self.0.read() {
            Ok(list) => list.clone(),
            Err(_) => return Err(crate::Error::Internal("mint gates poisoned".into())),
        };
        for gate in gates {
            gate.before_mint(user_id, method).await?;
        }
        Ok(())
    }
}
