use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JwtTemplates {
    Table,
    Id,
    Name,
    Claims,
    SigningAlg,
    SecretEnc,
    LifetimeSecs,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Named claims templates for `POST /v1/session/token/{name}`. An HS256 template keeps its
        // shared secret sealed with the master key; others sign with the instance keys.
        manager
            .create_table(
                Table::create()
                    .table(JwtTemplates::Table)
                    .col(string_len(JwtTemplates::Id, 64).primary_key())
                    .col(string_len_uniq(JwtTemplates::Name, 64))
                    .col(text(JwtTemplates::Claims))
                    .col(string_len(JwtTemplates::SigningAlg, 16))
                    .col(text_null(JwtTemplates::SecretEnc))
                    .col(big_integer(JwtTemplates::LifetimeSecs))
                    .col(big_integer(JwtTemplates::CreatedAt))
                    .col(big_integer(JwtTemplates::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(JwtTemplates::Table).to_owned()).await
    }
}
