//! The console's dashboard figures, read from what the store already holds: the audit log
//! (sign-ins), the sessions and users tables, and the refresh tokens the token endpoint issues.

use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};
use serde::Serialize;

use crate::{
    Error, Result,
    identity::model::SessionStatus,
    infra::{
        audit::Actor,
        entity::{audit_event, oauth_refresh_token, organisation, session, user},
        store::Store,
    },
    tenancy::access,
};

/// Days of sign-ins shown, ending today.
pub const SIGN_IN_DAYS: i64 = 14;
/// Minutes of token requests shown, ending now.
pub const TOKEN_MINUTES: i64 = 60;
const DAY: i64 = 86_400;
const MINUTE: i64 = 60;

/// Sign-ins that succeeded; every refusal of a sign-in is one of [`FAILED_SIGN_INS`].
const SUCCEEDED_SIGN_IN: &str = "sign_in.succeeded";
const FAILED_SIGN_INS: [&str; 4] =
    ["sign_in.failed", "sign_in.throttled", "saml.response_rejected", "upstream.sign_in_rejected"];

/// One day's sign-ins (the day as the Unix time of its midnight, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DaySignIns {
    pub day: i64,
    pub succeeded: u64,
    pub failed: u64,
}

/// Token requests in one minute (the minute as a Unix time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    pub minute: i64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardStats {
    pub users: u64,
    pub organisations: u64,
    pub active_sessions: u64,
    /// The last [`SIGN_IN_DAYS`] days, oldest first, every day present.
    pub sign_ins: Vec<DaySignIns>,
    /// Code and refresh-token grants (each issues a refresh token) per minute over the last
    /// [`TOKEN_MINUTES`] minutes, oldest first, every minute present.
    pub token_requests: Vec<MinuteCount>,
}

#[derive(Debug, FromQueryResult)]
struct Bucket {
    bucket: i64,
    action: String,
    n: i64,
}

#[derive(Debug, FromQueryResult)]
struct MinuteBucket {
    bucket: i64,
    n: i64,
}

#[derive(Clone)]
pub struct Dashboard {
    store: Store,
}

impl Dashboard {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The instance's figures; instance administrators and instance credentials only.
    pub async fn stats(&self, actor: &Actor) -> Result<DashboardStats> {
        let db = self.store.db();
        if !access::is_instance_actor(db, actor).await? {
            return Err(Error::Forbidden("the dashboard is for instance administrators".into()));
        }
        let now = self.store.now();
        let active = SessionStatus::Active.as_str();
        Ok(DashboardStats {
            users: user::Entity::find().count(db).await?,
            organisations: organisation::Entity::find().count(db).await?,
            active_sessions: session::Entity::find()
                .filter(session::Column::Status.eq(active))
                .filter(session::Column::ExpiresAt.gt(now))
                .filter(session::Column::IdleExpiresAt.gt(now))
                .count(db)
                .await?,
            sign_ins: self.sign_ins(now).await?,
            token_requests: self.token_requests(now).await?,
        })
    }

    async fn sign_ins(&self, now: i64) -> Result<Vec<DaySignIns>> {
        let first_day = now.div_euclid(DAY) - (SIGN_IN_DAYS - 1);
        let day = Expr::cust(format!("occurred_at / {DAY}"));
        let mut actions = vec![SUCCEEDED_SIGN_IN];
        actions.extend(FAILED_SIGN_INS);
        let rows = audit_event::Entity::find()
            .select_only()
            .column_as(day.clone(), "bucket")
            .column(audit_event::Column::Action)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .filter(audit_event::Column::Action.is_in(actions))
            .filter(audit_event::Column::OccurredAt.gte(first_day * DAY))
            .group_by(day)
            .group_by(audit_event::Column::Action)
            .into_model::<Bucket>()
            .all(self.store.db())
            .await?;
        Ok(days_of(first_day, &rows))
    }

    async fn token_requests(&self, now: i64) -> Result<Vec<MinuteCount>> {
        let first = now.div_euclid(MINUTE) - (TOKEN_MINUTES - 1);
        let minute = Expr::cust(format!("created_at / {MINUTE}"));
        let rows = oauth_refresh_token::Entity::find()
            .select_only()
            .column_as(minute.clone(), "bucket")
            .column_as(Expr::cust("COUNT(*)"), "n")
            .filter(oauth_refresh_token::Column::CreatedAt.gte(first * MINUTE))
            .group_by(minute)
            .into_model::<MinuteBucket>()
            .all(self.store.db())
            .await?;
        Ok((first..first + TOKEN_MINUTES)
            .map(|m| MinuteCount {
                minute: m * MINUTE,
                count: rows.iter().filter(|r| r.bucket == m).map(|r| count(r.n)).sum(),
            })
            .collect())
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Every day from `first_day` for [`SIGN_IN_DAYS`] days, with the buckets' counts.
fn days_of(first_day: i64, rows: &[Bucket]) -> Vec<DaySignIns> {
    (first_day..first_day + SIGN_IN_DAYS)
        .map(|d| {
            let of_day = rows.iter().filter(|r| r.bucket == d);
            let (mut succeeded, mut failed) = (0, 0);
            for r in of_day {
                if r.action == SUCCEEDED_SIGN_IN {
                    succeeded += count(r.n);
                } else {
                    failed += count(r.n);
                }
            }
            DaySignIns { day: d * DAY, succeeded, failed }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(day: i64, action: &str, n: i64) -> Bucket {
        Bucket { bucket: day, action: action.into(), n }
    }

    #[test]
    fn every_day_is_present_and_failures_of_every_kind_add_up() {
        let rows = [
            bucket(101, "sign_in.succeeded", 3),
            bucket(101, "sign_in.failed", 2),
            bucket(101, "saml.response_rejected", 1),
            bucket(110, "upstream.sign_in_rejected", 4),
        ];
        let days = days_of(100, &rows);
        assert_eq!(days.len(), SIGN_IN_DAYS as usize);
        assert_eq!(days[0], DaySignIns { day: 100 * DAY, succeeded: 0, failed: 0 });
        assert_eq!(days[1], DaySignIns { day: 101 * DAY, succeeded: 3, failed: 3 });
        assert_eq!(days[10], DaySignIns { day: 110 * DAY, succeeded: 0, failed: 4 });
    }
}
