use sea_orm_migration::{prelude::*, schema::big_integer_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthRefreshTokens {
    Table,
    SessionId,
    FamilyId,
}

#[derive(DeriveIden)]
enum OauthCodes {
    Table,
    RevokedAt,
}

const SESSION_INDEX: &str = "idx_oauth_refresh_tokens_session";
const FAMILY_INDEX: &str = "idx_oauth_refresh_tokens_family";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Every rotation inserts a refresh token, and each index is one more page written per
        // token (the family index alone cost about a tenth of the refresh grant's throughput).
        // A family's revocation is now recorded once, on the code that started it (its id is
        // the family id), instead of on each of its tokens; and back-channel logout finds a
        // session's clients through its redeemed codes. So neither index is needed.
        manager
            .alter_table(
                Table::alter()
                    .table(OauthCodes::Table)
                    .add_column(big_integer_null(OauthCodes::RevokedAt))
                    .to_owned(),
            )
            .await?;
        // Families revoked the old way keep their revocation.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE oauth_codes SET revoked_at = (SELECT MIN(r.revoked_at) FROM \
                 oauth_refresh_tokens r WHERE r.family_id = oauth_codes.id) WHERE EXISTS \
                 (SELECT 1 FROM oauth_refresh_tokens r WHERE r.family_id = oauth_codes.id \
                 AND r.revoked_at IS NOT NULL)",
            )
            .await?;
        for index in [SESSION_INDEX, FAMILY_INDEX] {
            manager
                .drop_index(Index::drop().name(index).table(OauthRefreshTokens::Table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (index, col) in [
            (SESSION_INDEX, OauthRefreshTokens::SessionId),
            (FAMILY_INDEX, OauthRefreshTokens::FamilyId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(index)
                        .table(OauthRefreshTokens::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(OauthCodes::Table)
                    .drop_column(OauthCodes::RevokedAt)
                    .to_owned(),
            )
            .await
    }
}
