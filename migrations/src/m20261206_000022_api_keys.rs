use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    SecretHash,
    Prefix,
    OrgId,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Organisations {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Keys for the admin API. Only the SHA-256 of the secret is kept (the secret has 256
        // bits of entropy, so a fast hash is enough); `prefix` is the secret's first characters,
        // shown in listings so an operator can tell keys apart. `org_id` null means the key
        // acts on the whole instance; otherwise on that organisation only, and it goes with it.
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(string_len(ApiKeys::Id, 64).primary_key())
                    .col(string_len(ApiKeys::Name, 200))
                    .col(string_len(ApiKeys::SecretHash, 64))
                    .col(string_len(ApiKeys::Prefix, 16))
                    .col(string_len_null(ApiKeys::OrgId, 64))
                    .col(string_len(ApiKeys::CreatedBy, 200))
                    .col(big_integer(ApiKeys::CreatedAt))
                    .col(big_integer(ApiKeys::ExpiresAt))
                    .col(big_integer_null(ApiKeys::LastUsedAt))
                    .col(big_integer_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::OrgId)
                            .to(Organisations::Table, Organisations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_secret_hash")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::SecretHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_org")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::OrgId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiKeys::Table).to_owned()).await
    }
}
