use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_outbox")]
pub struct Model {
    /// Prefixed by kind (`mail_…`, `bcl_…`, `job_…`): a mail's Message-ID and a logout token's
    /// `jti` are built from it, so they stay the same across retries.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The job's kind (`mail`, `sessions_ended`, …), also the payload's tag.
    pub kind: String,
    /// The job as tagged JSON. Secrets in it (mail bodies) are sealed,
    /// and erased once the job is finished.
    pub payload: String,
    /// At most one job per key while its row is kept (unique; NULL for none).
    pub dedupe_key: Option<String>,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// When the job is next due (while pending).
    pub run_at: i64,
    /// After this, a failing job is given up instead of retried.
    pub give_up_at: i64,
    /// While running: the random token of the current claim. Renewals and the outcome are
    /// written only where it still matches, so a node whose claim was taken over writes nothing.
    pub claim: Option<String>,
    /// While running: the claim's expiry, renewed while the job runs; once past, another node
    /// may take the job over.
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    /// When the job first became due.
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
