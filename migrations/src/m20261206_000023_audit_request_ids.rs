use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    RequestId,
    Actor,
    Action,
    TargetId,
    OccurredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The request an event came from (the ID in the server's log line), for changes made
        // through the admin API and the console.
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .add_column(string_len_null(AuditEvents::RequestId, 64))
                    .to_owned(),
            )
            .await?;
        // The audit log is filtered by actor, action or target, newest first.
        for (name, col) in [
            ("idx_audit_events_actor_time", AuditEvents::Actor),
            ("idx_audit_events_action_time", AuditEvents::Action),
            ("idx_audit_events_target_time", AuditEvents::TargetId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(col)
                        .col(AuditEvents::OccurredAt)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "idx_audit_events_actor_time",
            "idx_audit_events_action_time",
            "idx_audit_events_target_time",
        ] {
            manager
                .drop_index(Index::drop().name(name).table(AuditEvents::Table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvents::Table)
                    .drop_column(AuditEvents::RequestId)
                    .to_owned(),
            )
            .await
    }
}
