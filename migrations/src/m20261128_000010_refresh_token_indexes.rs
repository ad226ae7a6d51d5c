use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthRefreshTokens {
    Table,
    SessionId,
}

const INDEX: &str = "idx_oauth_refresh_tokens_session";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Every rotation inserts a refresh token, and each index is one more page written per
        // token. Nothing looks refresh tokens up by session any more: back-channel logout finds
        // a session's clients through its redeemed codes, from which every family starts.
        manager
            .drop_index(Index::drop().name(INDEX).table(OauthRefreshTokens::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(OauthRefreshTokens::Table)
                    .col(OauthRefreshTokens::SessionId)
                    .to_owned(),
            )
            .await
    }
}
