use sea_orm_migration::{prelude::*, schema::string_len_null, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    ActiveAlg,
}

const INDEX: &str = "idx_signing_keys_active_alg";

/// How long a key retired here stays published: the longest a token it signed can stay valid
/// under any configuration (a JWT-template token, 24 h) plus the largest clock skew (10 min).
const RETIRED_PUBLISH_SECS: i64 = 24 * 3600 + 600;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One active key per algorithm, enforced by the database: `active_alg` holds the
        // algorithm while the key is active and is NULL once it is retired, and a unique index
        // on it lets only one insert win when nodes that start together on an empty store each
        // create a key. NULLs never clash, so this works on SQLite and PostgreSQL alike, where
        // a partial index would not.
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .add_column(string_len_null(SigningKeys::ActiveAlg, 16))
                    .to_owned(),
            )
            .await?;
        let now = match manager.get_database_backend() {
            DbBackend::Postgres => "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
            _ => "CAST(strftime('%s', 'now') AS INTEGER)",
        };
        let db = manager.get_connection();
        // Nodes that raced before this migration may have left two active keys for one
        // algorithm: keep the newest, retire the others (still published, as after a rotation).
        // The newest is never retired, so the result does not depend on the order rows are
        // updated in.
        db.execute_unprepared(&format!(
            "UPDATE signing_keys SET status = 'retired', retired_at = {now}, \
             publish_until = {now} + {RETIRED_PUBLISH_SECS} \
             WHERE status = 'active' AND EXISTS (SELECT 1 FROM signing_keys newer \
             WHERE newer.alg = signing_keys.alg AND newer.status = 'active' \
             AND (newer.created_at > signing_keys.created_at \
             OR (newer.created_at = signing_keys.created_at AND newer.kid > signing_keys.kid)))"
        ))
        .await?;
        db.execute_unprepared("UPDATE signing_keys SET active_alg = alg WHERE status = 'active'")
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(SigningKeys::Table)
                    .col(SigningKeys::ActiveAlg)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(SigningKeys::Table).to_owned()).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .drop_column(SigningKeys::ActiveAlg)
                    .to_owned(),
            )
            .await
    }
}
