//! SAML connections in identifier-first routing: an organisation's enabled connection covers
//! all of its verified domains, so their addresses are sent to the IdP.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::connections;
use crate::{
    Result,
    infra::{entity::saml_connection, store::Store},
    sign_in::routing::{BoxFuture, ConnectionRegistry, EnterpriseConnection},
};

/// SAML's part in routing. It holds only the store: the sign-in service keeps its registries,
/// so a registry holding the sign-in service (as `SamlService` does) would be a reference
/// cycle that never frees the store.
pub struct SamlRegistry {
    store: Store,
}

impl SamlRegistry {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl ConnectionRegistry for SamlRegistry {
    fn connection_for<'a>(
        &'a self,
        org_id: &'a str,
        _domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<EnterpriseConnection>>> {
        Box::pin(async move {
            // The oldest enabled connection wins when an organisation has several.
            let Some(model) = saml_connection::Entity::find()
                .filter(saml_connection::Column::OrgId.eq(org_id))
                .filter(saml_connection::Column::Enabled.eq(true))
                .order_by_asc(saml_connection::Column::CreatedAt)
                .one(self.store.db())
                .await?
            else {
                return Ok(None);
            };
            let options = connections::options_of(&model)?;
            Ok(Some(EnterpriseConnection {
                start_path: format!("/saml/{}/login", model.id),
                id: model.id,
                org_id: model.org_id,
                protocol: "saml".into(),
                name: model.name,
                bypass: options.bypass,
            }))
        })
    }
}
