//! OpenID Connect provider: the client registry and client secrets (several per client while a
//! rotation overlaps).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    ClientId,
    Name,
    ClientType,
    RedirectUris,
    PostLogoutRedirectUris,
    GrantTypes,
    TokenEndpointAuthMethod,
    Jwks,
    FirstParty,
    BackchannelLogoutUri,
    AllowedScopes,
    RequirePkce,
    IdTokenAlg,
    AccessTokenTtlSecs,
    IdTokenTtlSecs,
    RefreshTokenTtlSecs,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OauthClientSecrets {
    Table,
    Id,
    ClientId,
    SecretHash,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // List-valued fields (URIs, grant types, scopes) are JSON arrays kept as text.
        manager
            .create_table(
                Table::create()
                    .table(OauthClients::Table)
                    .col(string_len(OauthClients::ClientId, 64).primary_key())
                    .col(string_len(OauthClients::Name, 200))
                    .col(string_len(OauthClients::ClientType, 16))
                    .col(text(OauthClients::RedirectUris))
                    .col(text(OauthClients::PostLogoutRedirectUris))
                    .col(text(OauthClients::GrantTypes))
                    .col(string_len(OauthClients::TokenEndpointAuthMethod, 32))
                    .col(text_null(OauthClients::Jwks))
                    .col(boolean(OauthClients::FirstParty))
                    .col(text_null(OauthClients::BackchannelLogoutUri))
                    .col(text(OauthClients::AllowedScopes))
                    .col(boolean(OauthClients::RequirePkce))
                    .col(string_len(OauthClients::IdTokenAlg, 16))
                    .col(big_integer(OauthClients::AccessTokenTtlSecs))
                    .col(big_integer(OauthClients::IdTokenTtlSecs))
                    .col(big_integer(OauthClients::RefreshTokenTtlSecs))
                    .col(big_integer(OauthClients::CreatedAt))
                    .col(big_integer(OauthClients::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Hex SHA-256 of each secret; `expires_at` is set on the old secret when a new one is
        // issued, so both work during the overlap.
        manager
            .create_table(
                Table::create()
                    .table(OauthClientSecrets::Table)
                    .col(string_len(OauthClientSecrets::Id, 64).primary_key())
                    .col(string_len(OauthClientSecrets::ClientId, 64))
                    .col(string_len_uniq(OauthClientSecrets::SecretHash, 64))
                    .col(big_integer(OauthClientSecrets::CreatedAt))
                    .col(big_integer_null(OauthClientSecrets::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthClientSecrets::Table, OauthClientSecrets::ClientId)
                            .to(OauthClients::Table, OauthClients::ClientId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_oauth_client_secrets_client")
                    .table(OauthClientSecrets::Table)
                    .col(OauthClientSecrets::ClientId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [OauthClientSecrets::Table.into_iden(), OauthClients::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
