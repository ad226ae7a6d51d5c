//! EASIE connections in identifier-first routing. Unlike a SAML connection, which covers every
//! verified domain of its organisation, an EASIE connection covers exactly the domain it
//! enrolled: the organisation's other domains keep their own method.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{EasieConnection, EasieService, connections::display_name};
use crate::{
    Result,
    infra::{entity::easie_connection, store::Store},
    sign_in::routing::{BoxFuture, ConnectionRegistry, EnterpriseConnection},
};

/// EASIE's part in routing. It holds only the store, like `SamlRegistry`: the sign-in service
/// keeps its registries, so a registry holding a service that holds the sign-in service would
/// be a reference cycle that never frees the store.
pub struct EasieRegistry {
    store: Store,
}

impl EasieRegistry {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// How routing sees a connection.
pub fn routed(c: EasieConnection) -> EnterpriseConnection {
    EnterpriseConnection {
        start_path: EasieService::login_path(&c.id),
        name: display_name(c.provider, &c.domain),
        protocol: "easie".into(),
        id: c.id,
        org_id: c.org_id,
        bypass: c.options.bypass,
    }
}

impl ConnectionRegistry for EasieRegistry {
    fn connection_for<'a>(
        &'a self,
        org_id: &'a str,
        domain: &'a str,
    ) -> BoxFuture<'a, Result<Option<EnterpriseConnection>>> {
        Box::pin(async move {
            // Routing already established that `org_id` holds `domain` verified.
            let Some(model) = easie_connection::Entity::find()
                .filter(easie_connection::Column::OrgId.eq(org_id))
                .filter(easie_connection::Column::Domain.eq(domain))
                .filter(easie_connection::Column::Enabled.eq(true))
                .one(self.store.db())
                .await?
            else {
                return Ok(None);
            };
            Ok(Some(routed(EasieConnection::try_from(model)?)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enterprise::easie::{EasieOptions, Provider};

    #[test]
    fn a_connection_routes_to_its_own_start_path_with_its_bypass_list() {
        let c = EasieConnection {
            id: "con_01".into(),
            kind: "easie",
            org_id: "org_01".into(),
            provider: Provider::Microsoft,
            domain: "contoso.test".into(),
            tenant_id: Some("11111111-1111-4111-8111-111111111111".into()),
            enabled: true,
            options: EasieOptions { bypass: vec!["root@contoso.test".into()] },
            created_at: 0,
            updated_at: 0,
        };
        let r = routed(c);
        assert_eq!(r.start_path, "/easie/con_01/login");
        assert_eq!(
            (r.protocol.as_str(), r.name.as_str()),
            ("easie", "Microsoft Entra ID (contoso.test)")
        );
        assert_eq!((r.id.as_str(), r.org_id.as_str()), ("con_01", "org_01"));
        assert_eq!(r.bypass, vec!["root@contoso.test"]);
    }
}
