use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Indexes for the admin user search (see `latchkey_core::admin::directory`): each prefix
/// branch is a range scan that yields user IDs without reading the table, so a search for a
/// rare prefix reads its matches only, whatever the directory's size.
///
/// - `(primary_email, id)`: the email branch (the unique index on `primary_email` alone
///   would need a table lookup per match to learn its ID).
/// - `(LOWER(name), id, name)`: the name branch, compared lower-cased as the search does; an
///   expression index, which SQLite (3.9+) and PostgreSQL both have, so no stored copy of the
///   name is kept in step with it. `name` is there for PostgreSQL, which answers from an
///   expression index alone (an index-only scan) only when it holds the columns the
///   expression reads; without it every match costs a table read.
///
/// The audit log needs no new index: each of its filters has an (x, occurred_at) index and the
/// unfiltered log `idx_audit_events_time`, each read newest first from the cursor's time (see
/// `latchkey_core::admin::audit_log`); ties within one second are few and sorted in memory.
const INDEXES: &[(&str, &str)] = &[
    ("idx_users_email_id", "users (primary_email, id)"),
    ("idx_users_name_lower_id", "users (LOWER(name), id, name)"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, on) in INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX {name} ON {on}")).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
        }
        Ok(())
    }
}
