use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ExternalIdentities {
    Table,
    Id,
    UserId,
    Issuer,
    Subject,
    ConnectionId,
    Email,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum PendingRequests {
    Table,
    Id,
    TokenHash,
    BindingHash,
    Kind,
    Payload,
    ReturnTo,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // An account's identities at upstream providers and enterprise connections: who the
        // provider says someone is (issuer + subject: a SAML entity ID and persistent NameID, an
        // OIDC `iss` and `sub`, or Microsoft's tenant and object ids), never an email address.
        manager
            .create_table(
                Table::create()
                    .table(ExternalIdentities::Table)
                    .col(string_len(ExternalIdentities::Id, 64).primary_key())
                    .col(string_len(ExternalIdentities::UserId, 64))
                    .col(string_len(ExternalIdentities::Issuer, 1024))
                    .col(string_len(ExternalIdentities::Subject, 1024))
                    .col(string_len_null(ExternalIdentities::ConnectionId, 64))
                    .col(string_len_null(ExternalIdentities::Email, 320))
                    .col(big_integer(ExternalIdentities::CreatedAt))
                    .col(big_integer(ExternalIdentities::LastUsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ExternalIdentities::Table, ExternalIdentities::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_external_identities_issuer_subject")
                    .table(ExternalIdentities::Table)
                    .col(ExternalIdentities::Issuer)
                    .col(ExternalIdentities::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_external_identities_user")
                    .table(ExternalIdentities::Table)
                    .col(ExternalIdentities::UserId)
                    .to_owned(),
            )
            .await?;

        // Requests waiting for an identity provider's answer (SAML request ids, upstream OIDC
        // state, nonce and PKCE verifier): single use, expiring, bound to one browser. Only the
        // hashes of the token and of the browser binding are stored; the payload is sealed.
        manager
            .create_table(
                Table::create()
                    .table(PendingRequests::Table)
                    .col(string_len(PendingRequests::Id, 64).primary_key())
                    .col(string_len_uniq(PendingRequests::TokenHash, 64))
                    .col(string_len(PendingRequests::BindingHash, 64))
                    .col(string_len(PendingRequests::Kind, 32))
                    .col(text(PendingRequests::Payload))
                    .col(string_len(PendingRequests::ReturnTo, 2048))
                    .col(big_integer(PendingRequests::CreatedAt))
                    .col(big_integer(PendingRequests::ExpiresAt))
                    .col(big_integer_null(PendingRequests::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_pending_requests_expires")
                    .table(PendingRequests::Table)
                    .col(PendingRequests::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [PendingRequests::Table.into_iden(), ExternalIdentities::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
