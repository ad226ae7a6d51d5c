use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EmailVerifications {
    Table,
    Id,
    UserId,
    Email,
    TokenHash,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const USER_INDEX: &str = "idx_email_verifications_user";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Emailed links that prove control of an address: single use, expiring, and only the
        // SHA-256 of the token is stored. `email` is the address the link was sent to, which
        // is the one that becomes verified.
        manager
            .create_table(
                Table::create()
                    .table(EmailVerifications::Table)
                    .col(string_len(EmailVerifications::Id, 64).primary_key())
                    .col(string_len(EmailVerifications::UserId, 64))
                    .col(string_len(EmailVerifications::Email, 320))
                    .col(string_len_uniq(EmailVerifications::TokenHash, 64))
                    .col(big_integer(EmailVerifications::ExpiresAt))
                    .col(big_integer_null(EmailVerifications::UsedAt))
                    .col(big_integer(EmailVerifications::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(EmailVerifications::Table, EmailVerifications::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(USER_INDEX)
                    .table(EmailVerifications::Table)
                    .col(EmailVerifications::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(EmailVerifications::Table).to_owned()).await
    }
}
