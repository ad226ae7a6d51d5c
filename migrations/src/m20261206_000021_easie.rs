use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EasieConnections {
    Table,
    Id,
    OrgId,
    Provider,
    Domain,
    TenantId,
    Enabled,
    Options,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UpstreamGrants {
    Table,
    Id,
    UserId,
    Provider,
    Issuer,
    Subject,
    ConnectionId,
    OrgId,
    RefreshTokenSealed,
    AccessTokenSealed,
    AccessTokenExpiresAt,
    Scopes,
    Snapshot,
    LastSuccessAt,
    NextCheckAt,
    Status,
    RevokedReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UpstreamEventIds {
    Table,
    Id,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    Status,
}

#[derive(DeriveIden)]
enum Organisations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_connections(manager).await?;
        create_grants(manager).await?;
        // Security event token IDs already acted on (RISC replay cache), kept until the event is
        // too old to be accepted anyway. The key is a hash of (issuer, jti).
        manager
            .create_table(
                Table::create()
                    .table(UpstreamEventIds::Table)
                    .col(string_len(UpstreamEventIds::Id, 64).primary_key())
                    .col(big_integer(UpstreamEventIds::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // A membership that deprovisioning suspended (`suspended`) grants nothing until a new
        // valid sign-in through the organisation's connection makes it `active` again.
        manager
            .alter_table(
                Table::alter()
                    .table(Memberships::Table)
                    .add_column(string_len(Memberships::Status, 16).default("active"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Memberships::Table)
                    .drop_column(Memberships::Status)
                    .to_owned(),
            )
            .await?;
        for t in [
            UpstreamEventIds::Table.into_iden(),
            UpstreamGrants::Table.into_iden(),
            EasieConnections::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

async fn create_connections(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // An organisation's EASIE enrollment: members of `domain` sign in through `provider`
    // (`google` or `microsoft`; for Microsoft the tenant pinned at enrollment). A domain is
    // enrolled once on the whole instance. `options` is JSON (the bypass allow-list).
    manager
        .create_table(
            Table::create()
                .table(EasieConnections::Table)
                .col(string_len(EasieConnections::Id, 64).primary_key())
                .col(string_len(EasieConnections::OrgId, 64))
                .col(string_len(EasieConnections::Provider, 16))
                .col(string_len(EasieConnections::Domain, 253))
                .col(string_len_null(EasieConnections::TenantId, 64))
                .col(boolean(EasieConnections::Enabled))
                .col(text(EasieConnections::Options))
                .col(big_integer(EasieConnections::CreatedAt))
                .col(big_integer(EasieConnections::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(EasieConnections::Table, EasieConnections::OrgId)
                        .to(Organisations::Table, Organisations::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_easie_connections_domain")
                .table(EasieConnections::Table)
                .col(EasieConnections::Domain)
                .unique()
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_easie_connections_org")
                .table(EasieConnections::Table)
                .col(EasieConnections::OrgId)
                .to_owned(),
        )
        .await
}

async fn create_grants(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // The upstream token vault: one grant per user and provider. Tokens are sealed with the
    // master key. `snapshot` is the JSON of the identity claims that must never change (sub,
    // oid, tid, hd); `connection_id` / `org_id` name the EASIE enrollment the grant was made
    // through (null for consumer sign-in), and such grants are re-checked upstream at
    // `next_check_at` (the sweep's index).
    manager
        .create_table(
            Table::create()
                .table(UpstreamGrants::Table)
                .col(string_len(UpstreamGrants::Id, 64).primary_key())
                .col(string_len(UpstreamGrants::UserId, 64))
                .col(string_len(UpstreamGrants::Provider, 16))
                .col(string_len(UpstreamGrants::Issuer, 1024))
                .col(string_len(UpstreamGrants::Subject, 1024))
                .col(string_len_null(UpstreamGrants::ConnectionId, 64))
                .col(string_len_null(UpstreamGrants::OrgId, 64))
                .col(text_null(UpstreamGrants::RefreshTokenSealed))
                .col(text_null(UpstreamGrants::AccessTokenSealed))
                .col(big_integer_null(UpstreamGrants::AccessTokenExpiresAt))
                .col(text(UpstreamGrants::Scopes))
                .col(text(UpstreamGrants::Snapshot))
                .col(big_integer(UpstreamGrants::LastSuccessAt))
                .col(big_integer_null(UpstreamGrants::NextCheckAt))
                .col(string_len(UpstreamGrants::Status, 16))
                .col(string_len_null(UpstreamGrants::RevokedReason, 64))
                .col(big_integer(UpstreamGrants::CreatedAt))
                .col(big_integer(UpstreamGrants::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(UpstreamGrants::Table, UpstreamGrants::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_upstream_grants_user_provider")
                .table(UpstreamGrants::Table)
                .col(UpstreamGrants::UserId)
                .col(UpstreamGrants::Provider)
                .unique()
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_upstream_grants_next_check")
                .table(UpstreamGrants::Table)
                .col(UpstreamGrants::NextCheckAt)
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("idx_upstream_grants_subject")
                .table(UpstreamGrants::Table)
                .col(UpstreamGrants::Issuer)
                .col(UpstreamGrants::Subject)
                .to_owned(),
        )
        .await
}
