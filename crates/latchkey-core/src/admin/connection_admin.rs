//! Enterprise connections of either kind behind one face, for the console, the admin API and
//! the CLI: which service owns an ID is decided here once, not at every caller.

use serde::Serialize;

use crate::{
    Result,
    enterprise::{
        easie::{EasieConnectionView, EasieService},
        saml::{ConnectionView, SamlService},
    },
    infra::audit::Actor,
};

/// A SAML connection or an EASIE enrollment, serialised as its own view (each carries `kind`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum AnyConnection {
    Saml(Box<ConnectionView>),
    Easie(Box<EasieConnectionView>),
}

impl AnyConnection {
    pub fn org_id(&self) -> &str {
        match self {
            Self::Saml(c) => &c.org_id,
            Self::Easie(c) => &c.org_id,
        }
    }
}

#[derive(Clone)]
pub struct ConnectionAdmin {
    saml: SamlService,
    easie: EasieService,
}

impl ConnectionAdmin {
    pub fn new(saml: SamlService, easie: EasieService) -> Self {
        Self { saml, easie }
    }

    /// An organisation's connections, SAML first, each kind oldest first.
    pub async fn list(&self, org_id: &str, actor: &Actor) -> Result<Vec<AnyConnection>> {
        let mut all: Vec<AnyConnection> = (self.saml.list(Some(org_id), actor).await?)
            .into_iter()
            .map(|c| AnyConnection::Saml(Box::new(c)))
            .collect();
        let easie = self.easie.list(Some(org_id), actor).await?;
        all.extend(easie.into_iter().map(|c| AnyConnection::Easie(Box::new(c))));
        Ok(all)
    }

    pub async fn show(&self, id: &str, actor: &Actor) -> Result<AnyConnection> {
        Ok(if self.easie.is_easie(id).await? {
            AnyConnection::Easie(Box::new(self.easie.show(id, actor).await?))
        } else {
            AnyConnection::Saml(Box::new(self.saml.show(id, actor).await?))
        })
    }

    /// Enables or disables either kind (disabling ends the sessions it signed in).
    pub async fn set_enabled(&self, id: &str, on: bool, actor: &Actor) -> Result<AnyConnection> {
        Ok(if self.easie.is_easie(id).await? {
            AnyConnection::Easie(Box::new(self.easie.set_enabled(id, on, actor).await?))
        } else {
            AnyConnection::Saml(Box::new(self.saml.set_enabled(id, on, actor).await?))
        })
    }

    pub async fn delete(&self, id: &str, actor: &Actor) -> Result<()> {
        if self.easie.is_easie(id).await? {
            self.easie.delete(id, actor).await
        } else {
            self.saml.delete(id, actor).await
        }
    }
}
