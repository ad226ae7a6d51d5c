use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SamlConnections {
    Table,
    Id,
    OrgId,
    Name,
    Enabled,
    IdpEntityId,
    IdpSsoRedirectUrl,
    IdpSsoPostUrl,
    IdpSloUrl,
    IdpSloBinding,
    IdpCerts,
    MetadataUrl,
    MetadataXml,
    MetadataFetchedAt,
    MetadataError,
    MetadataNextRefreshAt,
    Options,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SamlSpKeys {
    Table,
    Id,
    ConnectionId,
    KeySealed,
    CertPem,
    NotAfter,
    Status,
    RetiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SamlAssertionIds {
    Table,
    Id,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum SessionUpstreams {
    Table,
    SessionId,
    ConnectionId,
    Subject,
    SubjectFormat,
    SessionIndex,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Organisations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    AuthMethod,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_connections(manager).await?;
        create_sp_keys(manager).await?;
        // Consumed assertion IDs (replay cache), kept until the assertion's own expiry. The key
        // is a hash of (connection, assertion ID), so one insert decides on every node.
        manager
            .create_table(
                Table::create()
                    .table(SamlAssertionIds::Table)
                    .col(string_len(SamlAssertionIds::Id, 64).primary_key())
                    .col(big_integer(SamlAssertionIds::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        create_session_upstreams(manager).await?;
        // `saml:<connection id>` and `oidc:<upstream>:<connection id>` are longer than the 32
        // characters the column was made with. SQLite does not enforce the length (and cannot
        // alter a column's type); PostgreSQL does.
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .modify_column(
                            ColumnDef::new(Sessions::AuthMethod).string_len(128).not_null(),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            SessionUpstreams::Table.into_iden(),
            SamlAssertionIds::Table.into_iden(),
            SamlSpKeys::Table.into_iden(),
            SamlConnections::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

async fn create_connections(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // One enterprise SAML connection of an organisation. `idp_certs` is a JSON array of the
    // IdP's signing certificates (base64 DER); `metadata_xml` is the last good copy fetched
    // from `metadata_url`; `options` is the JSON of the connection's options.
    manager
        .create_table(
            Table::create()
                .table(SamlConnections::Table)
                .col(string_len(SamlConnections::Id, 64).primary_key())
                .col(string_len(SamlConnections::OrgId, 64))
                .col(string_len(SamlConnections::Name, 200))
                .col(boolean(SamlConnections::Enabled))
                .col(text(SamlConnections::IdpEntityId))
                .col(text_null(SamlConnections::IdpSsoRedirectUrl))
                .col(text_null(SamlConnections::IdpSsoPostUrl))
                .col(text_null(SamlConnections::IdpSloUrl))
                .col(string_len_null(SamlConnections::IdpSloBinding, 16))
                .col(text(SamlConnections::IdpCerts))
                .col(text_null(SamlConnections::MetadataUrl))
                .col(text_null(SamlConnections::MetadataXml))
                .col(big_integer_null(SamlConnections::MetadataFetchedAt))
                .col(text_null(SamlConnections::MetadataError))
                .col(big_integer_null(SamlConnections::MetadataNextRefreshAt))
                .col(text(SamlConnections::Options))
                .col(big_integer(SamlConnections::CreatedAt))
                .col(big_integer(SamlConnections::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(SamlConnections::Table, SamlConnections::OrgId)
                        .to(Organisations::Table, Organisations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_saml_connections_org")
                .table(SamlConnections::Table)
                .col(SamlConnections::OrgId)
                .to_owned(),
        )
        .await
}

async fn create_sp_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // The SP's key pairs per connection: one `active`, and during a rotation the `previous`
    // one, still published (and still decrypting) until `retires_at`.
    manager
        .create_table(
            Table::create()
                .table(SamlSpKeys::Table)
                .col(string_len(SamlSpKeys::Id, 64).primary_key())
                .col(string_len(SamlSpKeys::ConnectionId, 64))
                .col(text(SamlSpKeys::KeySealed))
                .col(text(SamlSpKeys::CertPem))
                .col(big_integer(SamlSpKeys::NotAfter))
                .col(string_len(SamlSpKeys::Status, 16))
                .col(big_integer_null(SamlSpKeys::RetiresAt))
                .col(big_integer(SamlSpKeys::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(SamlSpKeys::Table, SamlSpKeys::ConnectionId)
                        .to(SamlConnections::Table, SamlConnections::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_saml_sp_keys_connection")
                .table(SamlSpKeys::Table)
                .col(SamlSpKeys::ConnectionId)
                .to_owned(),
        )
        .await
}

async fn create_session_upstreams(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // Who the upstream provider said a session belongs to (SAML NameID and SessionIndex), so
    // the provider's logout request can find the session it means.
    manager
        .create_table(
            Table::create()
                .table(SessionUpstreams::Table)
                .col(string_len(SessionUpstreams::SessionId, 64).primary_key())
                .col(string_len(SessionUpstreams::ConnectionId, 64))
                .col(text(SessionUpstreams::Subject))
                .col(text_null(SessionUpstreams::SubjectFormat))
                .col(text_null(SessionUpstreams::SessionIndex))
                .col(big_integer(SessionUpstreams::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(SessionUpstreams::Table, SessionUpstreams::SessionId)
                        .to(Sessions::Table, Sessions::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_session_upstreams_connection")
                .table(SessionUpstreams::Table)
                .col(SessionUpstreams::ConnectionId)
                .to_owned(),
        )
        .await
}
