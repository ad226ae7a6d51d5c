use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BackchannelOutbox {
    Table,
    Id,
    ClientId,
    SessionId,
    UserId,
    Uri,
    Status,
    Attempts,
    NextAttemptAt,
    ClaimedUntil,
    LastError,
    CreatedAt,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Back-channel logout notifications, queued in the transaction that ends the session and
        // delivered by a worker like the mail outbox. The logout token is signed at delivery.
        manager
            .create_table(
                Table::create()
                    .table(BackchannelOutbox::Table)
                    .col(string_len(BackchannelOutbox::Id, 64).primary_key())
                    .col(string_len(BackchannelOutbox::ClientId, 64))
                    .col(string_len(BackchannelOutbox::SessionId, 64))
                    .col(string_len(BackchannelOutbox::UserId, 64))
                    .col(text(BackchannelOutbox::Uri))
                    .col(string_len(BackchannelOutbox::Status, 16))
                    .col(integer(BackchannelOutbox::Attempts))
                    .col(big_integer(BackchannelOutbox::NextAttemptAt))
                    .col(big_integer_null(BackchannelOutbox::ClaimedUntil))
                    .col(text_null(BackchannelOutbox::LastError))
                    .col(big_integer(BackchannelOutbox::CreatedAt))
                    .col(big_integer_null(BackchannelOutbox::SentAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_backchannel_outbox_status_next")
                    .table(BackchannelOutbox::Table)
                    .col(BackchannelOutbox::Status)
                    .col(BackchannelOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(BackchannelOutbox::Table).to_owned()).await
    }
}
