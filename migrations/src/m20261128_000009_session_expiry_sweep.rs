use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Status,
    ExpiresAt,
}

const INDEX: &str = "idx_sessions_status_expires";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The expiry sweeper looks for sessions still stored as active past their expiry on every
        // node every minute. Ended sessions are kept, so without this index each sweep would read
        // the whole history. Neither column changes with activity, so the frequent activity
        // writes do not maintain it.
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Sessions::Table)
                    .col(Sessions::Status)
                    .col(Sessions::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(Sessions::Table).to_owned()).await
    }
}
