use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Id,
    Kind,
    Recipient,
    Subject,
    TextBody,
    HtmlBody,
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
        // The outbox: mail is rendered and stored in the transaction that caused it, then sent by
        // a worker. Bodies are sealed with the master key because they carry codes and links.
        manager
            .create_table(
                Table::create()
                    .table(MailOutbox::Table)
                    .col(string_len(MailOutbox::Id, 64).primary_key())
                    .col(string_len(MailOutbox::Kind, 32))
                    .col(string_len(MailOutbox::Recipient, 320))
                    .col(text(MailOutbox::Subject))
                    .col(text(MailOutbox::TextBody))
                    .col(text(MailOutbox::HtmlBody))
                    .col(string_len(MailOutbox::Status, 16))
                    .col(integer(MailOutbox::Attempts))
                    .col(big_integer(MailOutbox::NextAttemptAt))
                    .col(big_integer_null(MailOutbox::ClaimedUntil))
                    .col(text_null(MailOutbox::LastError))
                    .col(big_integer(MailOutbox::CreatedAt))
                    .col(big_integer_null(MailOutbox::SentAt))
                    .to_owned(),
            )
            .await?;
        // The worker's scan: due pending rows and expired claims.
        manager
            .create_index(
                Index::create()
                    .name("idx_mail_outbox_status_next")
                    .table(MailOutbox::Table)
                    .col(MailOutbox::Status)
                    .col(MailOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MailOutbox::Table).to_owned()).await
    }
}
