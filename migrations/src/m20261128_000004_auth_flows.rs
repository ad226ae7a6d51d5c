use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SignInThrottles {
    Table,
    Key,
    Failures,
    FirstFailureAt,
    LastFailureAt,
    LockedUntil,
}

#[derive(DeriveIden)]
enum SignUpAttempts {
    Table,
    Id,
    Email,
    PasswordHash,
    CodeMac,
    Attempts,
    ExpiresAt,
    CreatedAt,
    CompletedAt,
    ClientIp,
}

#[derive(DeriveIden)]
enum PasswordResets {
    Table,
    Id,
    UserId,
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

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Failed sign-in counters per account (`account:<email>`) and per client IP (`ip:<addr>`),
        // in the store so every node enforces the same limits.
        manager
            .create_table(
                Table::create()
                    .table(SignInThrottles::Table)
                    .col(string_len(SignInThrottles::Key, 400).primary_key())
                    .col(integer(SignInThrottles::Failures))
                    .col(big_integer(SignInThrottles::FirstFailureAt))
                    .col(big_integer(SignInThrottles::LastFailureAt))
                    .col(big_integer_null(SignInThrottles::LockedUntil))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SignUpAttempts::Table)
                    .col(string_len(SignUpAttempts::Id, 64).primary_key())
                    .col(string_len(SignUpAttempts::Email, 320))
                    .col(text(SignUpAttempts::PasswordHash))
                    .col(string_len(SignUpAttempts::CodeMac, 64))
                    .col(integer(SignUpAttempts::Attempts))
                    .col(big_integer(SignUpAttempts::ExpiresAt))
                    .col(big_integer(SignUpAttempts::CreatedAt))
                    .col(big_integer_null(SignUpAttempts::CompletedAt))
                    .col(string_len_null(SignUpAttempts::ClientIp, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sign_up_attempts_email")
                    .table(SignUpAttempts::Table)
                    .col(SignUpAttempts::Email)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PasswordResets::Table)
                    .col(string_len(PasswordResets::Id, 64).primary_key())
                    .col(string_len(PasswordResets::UserId, 64))
                    .col(string_len_uniq(PasswordResets::TokenHash, 64))
                    .col(big_integer(PasswordResets::ExpiresAt))
                    .col(big_integer_null(PasswordResets::UsedAt))
                    .col(big_integer(PasswordResets::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PasswordResets::Table, PasswordResets::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PasswordResets::Table.into_iden(),
            SignUpAttempts::Table.into_iden(),
            SignInThrottles::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
