use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JobOutbox {
    Table,
    Id,
    Kind,
    Payload,
    DedupeKey,
    Status,
    Attempts,
    RunAt,
    GiveUpAt,
    Claim,
    LeaseUntil,
    LastError,
    CreatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
}

#[derive(DeriveIden)]
enum BackchannelOutbox {
    Table,
}

/// How long the outbox retried mail and logout notifications before giving up (a day).
const GIVE_UP_SECS: i64 = 24 * 3600;

/// A JSON object built from (key, SQL expression) pairs, as text, in the backend's dialect.
fn json_object(backend: DbBackend, fields: &[(&str, &str)]) -> String {
    let args: Vec<String> = fields.iter().map(|(k, v)| format!("'{k}', {v}")).collect();
    match backend {
        DbBackend::Postgres => format!("CAST(json_build_object({}) AS TEXT)", args.join(", ")),
        _ => format!("json_object({})", args.join(", ")),
    }
}

/// The text value of `key` in the JSON column `payload`.
fn json_field(backend: DbBackend, key: &str) -> String {
    match backend {
        DbBackend::Postgres => format!("(CAST(payload AS JSON) ->> '{key}')"),
        _ => format!("json_extract(payload, '$.{key}')"),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One durable job outbox for every kind of background work (mail, back-channel logout,
        // and the jobs to come), replacing the two outboxes each with its own claim loop. Jobs
        // are claimed with a random token and a short lease that is renewed while they run.
        manager
            .create_table(
                Table::create()
                    .table(JobOutbox::Table)
                    .col(string_len(JobOutbox::Id, 64).primary_key())
                    .col(string_len(JobOutbox::Kind, 32))
                    .col(text(JobOutbox::Payload))
                    .col(string_len_null(JobOutbox::DedupeKey, 255))
                    .col(string_len(JobOutbox::Status, 16))
                    .col(integer(JobOutbox::Attempts))
                    .col(big_integer(JobOutbox::RunAt))
                    .col(big_integer(JobOutbox::GiveUpAt))
                    .col(string_len_null(JobOutbox::Claim, 64))
                    .col(big_integer_null(JobOutbox::LeaseUntil))
                    .col(text_null(JobOutbox::LastError))
                    .col(big_integer(JobOutbox::CreatedAt))
                    .col(big_integer_null(JobOutbox::FinishedAt))
                    .to_owned(),
            )
            .await?;
        // The runner's scan: due pending jobs and expired leases.
        manager
            .create_index(
                Index::create()
                    .name("idx_job_outbox_status_run_at")
                    .table(JobOutbox::Table)
                    .col(JobOutbox::Status)
                    .col(JobOutbox::RunAt)
                    .to_owned(),
            )
            .await?;
        // At most one stored job per key (NULLs never clash, on either database).
        manager
            .create_index(
                Index::create()
                    .name("idx_job_outbox_dedupe_key")
                    .table(JobOutbox::Table)
                    .col(JobOutbox::DedupeKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        move_pending_rows(manager).await?;
        for table in [MailOutbox::Table.into_iden(), BackchannelOutbox::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The old tables, with the mail and logout jobs not yet finished moved back (pending
        // `sessions_ended` jobs have no counterpart there and are lost).
        crate::m20261128_000002_mail_outbox::Migration.up(manager).await?;
        crate::m20261128_000006_backchannel_logout::Migration.up(manager).await?;
        let b = manager.get_database_backend();
        let f = |k: &str| json_field(b, k);
        let unfinished = "status IN ('pending', 'running')";
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "INSERT INTO mail_outbox (id, kind, recipient, subject, text_body, html_body, status, \
             attempts, next_attempt_at, claimed_until, last_error, created_at, sent_at) \
             SELECT id, {}, {}, {}, {}, {}, 'pending', attempts, run_at, NULL, last_error, \
             created_at, NULL FROM job_outbox WHERE kind = 'mail' AND {unfinished}",
            f("template"),
            f("to"),
            f("subject"),
            f("text"),
            f("html"),
        ))
        .await?;
        db.execute_unprepared(&format!(
            "INSERT INTO backchannel_outbox (id, client_id, session_id, user_id, uri, status, \
             attempts, next_attempt_at, claimed_until, last_error, created_at, sent_at) \
             SELECT id, {}, {}, {}, {}, 'pending', attempts, run_at, NULL, last_error, \
             created_at, NULL FROM job_outbox WHERE kind = 'backchannel_logout' AND {unfinished}",
            f("client_id"),
            f("session_id"),
            f("user_id"),
            f("uri"),
        ))
        .await?;
        manager.drop_table(Table::drop().table(JobOutbox::Table).to_owned()).await
    }
}

/// Mail and logout notifications not yet delivered become jobs with the same ids (so the
/// Message-ID and the logout token's `jti` stay the same), attempts, error and deadline. A row a
/// node was sending becomes due when that node's claim would have expired. Sent and failed rows
/// (history whose bodies were already erased) are not kept.
async fn move_pending_rows(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let b = manager.get_database_backend();
    let unfinished = "status IN ('pending', 'sending')";
    let run_at = "CASE WHEN status = 'sending' THEN COALESCE(claimed_until, next_attempt_at) \
                  ELSE next_attempt_at END";
    let columns = "id, kind, payload, dedupe_key, status, attempts, run_at, give_up_at, claim, \
                   lease_until, last_error, created_at, finished_at";
    let mail = json_object(
        b,
        &[
            ("kind", "'mail'"),
            ("template", "kind"),
            ("to", "recipient"),
            ("subject", "subject"),
            ("text", "text_body"),
            ("html", "html_body"),
        ],
    );
    let logout = json_object(
        b,
        &[
            ("kind", "'backchannel_logout'"),
            ("client_id", "client_id"),
            ("session_id", "session_id"),
            ("user_id", "user_id"),
            ("uri", "uri"),
        ],
    );
    let db = manager.get_connection();
    for (table, kind, payload) in
        [("mail_outbox", "mail", mail), ("backchannel_outbox", "backchannel_logout", logout)]
    {
        db.execute_unprepared(&format!(
            "INSERT INTO job_outbox ({columns}) SELECT id, '{kind}', {payload}, NULL, 'pending', \
             attempts, {run_at}, created_at + {GIVE_UP_SECS}, NULL, NULL, last_error, \
             created_at, NULL FROM {table} WHERE {unfinished}"
        ))
        .await?;
    }
    Ok(())
}
