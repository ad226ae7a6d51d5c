use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthRevokedAccessTokens {
    Table,
    Jti,
    ClientId,
    ExpiresAt,
    Revision,
    RevokedAt,
}

#[derive(DeriveIden)]
enum OauthCodes {
    Table,
    Resources,
}

#[derive(DeriveIden)]
enum OauthRefreshTokens {
    Table,
    Resources,
}

/// RFC 8707 for user grants: the resources (space-separated absolute URIs) a grant was given at
/// the authorization request, or at the code exchange when the request named none; its access
/// tokens are aimed at them (`aud`), and a refresh may narrow to some of them.
///
/// RFC 7009 revocation of single access tokens: the `jti` of each revoked token, kept until the
/// token's own `exp` (after that it is refused anyway). `revision` is the store revision the
/// revoking transaction wrote: every node loads the rows newer than the revision it last saw
/// (`latchkey_core::oauth::revoked_tokens`), so the list is read once per change, not per
/// request.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthRevokedAccessTokens::Table)
                    .col(string_len(OauthRevokedAccessTokens::Jti, 64).primary_key())
                    .col(string_len(OauthRevokedAccessTokens::ClientId, 128))
                    .col(big_integer(OauthRevokedAccessTokens::ExpiresAt))
                    .col(big_integer(OauthRevokedAccessTokens::Revision))
                    .col(big_integer(OauthRevokedAccessTokens::RevokedAt))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_revoked_access_tokens_revision", OauthRevokedAccessTokens::Revision),
            ("idx_revoked_access_tokens_expires", OauthRevokedAccessTokens::ExpiresAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(OauthRevokedAccessTokens::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(OauthCodes::Table)
                    .add_column(text_null(OauthCodes::Resources))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthRefreshTokens::Table)
                    .add_column(text_null(OauthRefreshTokens::Resources))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthRefreshTokens::Table)
                    .drop_column(OauthRefreshTokens::Resources)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OauthCodes::Table)
                    .drop_column(OauthCodes::Resources)
                    .to_owned(),
            )
            .await?;
        manager.drop_table(Table::drop().table(OauthRevokedAccessTokens::Table).to_owned()).await
    }
}
