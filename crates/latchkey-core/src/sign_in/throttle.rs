//! Attempt limits: exponential delay between failed sign-ins on an account, a temporary lockout
//! after too many, a cap per client IP, and fixed-window limits on requests that send mail.
//! Kept in the store so every node agrees.
//!
//! Every limit is taken *before* the work it guards: an attempt first reserves its place with a
//! compare-and-set write (`reserve`), and only a reserved attempt is evaluated. Parallel
//! attempts therefore serialise on the counter row and cannot all pass a check that was read
//! before any of them recorded itself. A successful sign-in gives its reservation back.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::Serialize;

use crate::{
    Error, Result,
    infra::{config::AuthPolicy, entity::sign_in_throttle},
};

/// The counters one password attempt is charged to.
pub struct Keys {
    account: String,
    ip: Option<String>,
}

impl Keys {
    pub fn new(email: &str, ip: Option<&str>) -> Self {
        Self { account: format!("account:{email}"), ip: ip.map(|ip| format!("ip:{ip}")) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LockoutStatus {
    pub failures: i32,
    pub locked_until: Option<i64>,
}

/// A counter's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    count: i32,
    first_at: i64,
    last_at: i64,
    locked_until: Option<i64>,
}

impl From<&sign_in_throttle::Model> for Counter {
    fn from(m: &sign_in_throttle::Model) -> Self {
        Self {
            count: m.failures,
            first_at: m.first_failure_at,
            last_at: m.last_failure_at,
            locked_until: m.locked_until,
        }
    }
}

/// What a rule says about one more attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Refused; the caller may retry after this many seconds.
    Refuse(u64),
    /// Allowed; the counter becomes this.
    Take(Counter),
}

/// Seconds to wait after `failures` consecutive failures: none for the first, then 1, 2, 4 … 60.
fn delay_after(failures: i32) -> i64 {
    if failures < 2 { 0 } else { std::cmp::min(1i64 << std::cmp::min(failures - 2, 6), 60) }
}

fn wait(until: i64, now: i64) -> u64 {
    u64::try_from(std::cmp::max(until - now, 1)).unwrap_or(1)
}

/// The account rule: a lockout holds until it ends; within a streak, each attempt waits out the
/// delay its predecessors earned; the attempt that reaches `max_failures` locks the account
/// (given back if it succeeds). A lockout that ran out, or an old streak, starts afresh.
fn account_rule(c: Option<Counter>, policy: &AuthPolicy, now: i64) -> Verdict {
    let window = i64::try_from(policy.lockout.as_secs()).unwrap_or(i64::MAX / 4);
    let streak = c.filter(|c| now - c.first_at <= window && c.locked_until.is_none_or(|u| u > now));
    if let Some(until) = streak.and_then(|c| c.locked_until) {
        return Verdict::Refuse(wait(until, now));
    }
    if let Some(c) = streak
        && now < c.last_at + delay_after(c.count)
    {
        return Verdict::Refuse(wait(c.last_at + delay_after(c.count), now));
    }
    let (count, first_at) = streak.map_or((1, now), |c| (c.count + 1, c.first_at));
    let max = i32::try_from(policy.max_failures).unwrap_or(i32::MAX);
    let locked_until = (count >= max).then_some(now + window);
    Verdict::Take(Counter { count, first_at, last_at: now, locked_until })
}

/// A fixed-window cap: at most `limit` counted attempts per `window` seconds.
fn window_rule(c: Option<Counter>, limit: u32, window: i64, now: i64) -> Verdict {
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    match c.filter(|c| now - c.first_at <= window) {
        Some(c) if c.count >= limit => Verdict::Refuse(wait(c.first_at + window, now)),
        Some(c) => Verdict::Take(Counter { count: c.count + 1, last_at: now, ..c }),
        None => {
            Verdict::Take(Counter { count: 1, first_at: now, last_at: now, locked_until: None })
        }
    }
}

/// Compare-and-set attempts before giving up; each lost race means another attempt was
/// recorded, so the loop ends quickly even under a burst.
const MAX_RACES: usize = 64;

/// Applies `rule` to the stored counter and records the result only if the counter did not
/// change meanwhile; retries on a lost race. Returns the counter as reserved.
async fn reserve<C, F>(conn: &C, key: &str, rule: F) -> Result<Counter>
where
    C: ConnectionTrait,
    F: Fn(Option<Counter>) -> Verdict,
{
    for _ in 0..MAX_RACES {
        let stored = sign_in_throttle::Entity::find_by_id(key.to_owned()).one(conn).await?;
        let current = stored.as_ref().map(Counter::from);
        let next = match rule(current) {
            Verdict::Refuse(retry_after_secs) => {
                return Err(Error::RateLimited { retry_after_secs });
            }
            Verdict::Take(next) => next,
        };
        let written = match current {
            Some(old) => compare_and_set(conn, key, old, next).await?,
            None => insert_new(conn, key, next).await?,
        };
        if written {
            return Ok(next);
        }
    }
    Err(Error::Internal(format!("throttle counter {key} kept changing")))
}

async fn compare_and_set<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    old: Counter,
    new: Counter,
) -> Result<bool> {
    use sign_in_throttle::Column as Col;
    let locked = match old.locked_until {
        Some(u) => Col::LockedUntil.eq(u),
        None => Col::LockedUntil.is_null(),
    };
    let res = sign_in_throttle::Entity::update_many()
        .col_expr(Col::Failures, Expr::value(new.count))
        .col_expr(Col::FirstFailureAt, Expr::value(new.first_at))
        .col_expr(Col::LastFailureAt, Expr::value(new.last_at))
        .col_expr(Col::LockedUntil, Expr::value(new.locked_until))
        .filter(Col::Key.eq(key))
        .filter(Col::Failures.eq(old.count))
        .filter(Col::FirstFailureAt.eq(old.first_at))
        .filter(Col::LastFailureAt.eq(old.last_at))
        .filter(locked)
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

async fn insert_new<C: ConnectionTrait>(conn: &C, key: &str, new: Counter) -> Result<bool> {
    let inserted = sign_in_throttle::Entity::insert(sign_in_throttle::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(new.count),
        first_failure_at: Set(new.first_at),
        last_failure_at: Set(new.last_at),
        locked_until: Set(new.locked_until),
    })
    .on_conflict(OnConflict::column(sign_in_throttle::Column::Key).do_nothing().to_owned())
    .exec_without_returning(conn)
    .await?;
    Ok(inserted == 1)
}

/// A password attempt's place, reserved on the IP and account counters.
#[derive(Debug)]
pub struct Reservation {
    /// This attempt locks the account if it fails.
    pub locks_until: Option<i64>,
}

/// Reserves one password attempt against the client IP's cap and the account's delay and
/// lockout, before the password is checked. Refused attempts are not counted.
pub async fn reserve_attempt<C: ConnectionTrait>(
    conn: &C,
    keys: &Keys,
    policy: &AuthPolicy,
    now: i64,
) -> Result<Reservation> {
    let window = i64::try_from(policy.lockout.as_secs()).unwrap_or(i64::MAX / 4);
    if let Some(ip) = &keys.ip {
        reserve(conn, ip, |c| window_rule(c, policy.ip_max_failures, window, now)).await?;
    }
    match reserve(conn, &keys.account, |c| account_rule(c, policy, now)).await {
        Ok(c) => Ok(Reservation { locks_until: c.locked_until }),
        Err(e) => {
            // The account refused: this attempt is not evaluated, so it does not count
            // against the IP either.
            if let Some(ip) = &keys.ip {
                give_back(conn, ip).await?;
            }
            Err(e)
        }
    }
}

/// A successful sign-in: the account's streak ends and the IP gets its attempt back.
pub async fn succeeded<C: ConnectionTrait>(conn: &C, keys: &Keys) -> Result<()> {
    clear_account(conn, keys).await?;
    if let Some(ip) = &keys.ip {
        give_back(conn, ip).await?;
    }
    Ok(())
}

/// Clears an account's counter and lockout (success, or an administrator's unlock).
pub async fn clear_account<C: ConnectionTrait>(conn: &C, keys: &Keys) -> Result<()> {
    sign_in_throttle::Entity::delete_by_id(keys.account.clone()).exec(conn).await?;
    Ok(())
}

async fn give_back<C: ConnectionTrait>(conn: &C, key: &str) -> Result<()> {
    use sign_in_throttle::Column as Col;
    sign_in_throttle::Entity::update_many()
        .col_expr(Col::Failures, Expr::col(Col::Failures).sub(1))
        .filter(Col::Key.eq(key))
        .filter(Col::Failures.gt(0))
        .exec(conn)
        .await?;
    Ok(())
}

/// Counts one request against `key` in a fixed window, before the work; refuses once `limit`
/// is reached. For requests that send mail (sign-up codes, reset links), which must not become
/// a mail cannon.
pub async fn hit<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    limit: u32,
    window: i64,
    now: i64,
) -> Result<()> {
    reserve(conn, key, |c| window_rule(c, limit, window, now)).await.map(|_| ())
}

pub async fn status<C: ConnectionTrait>(conn: &C, keys: &Keys, now: i64) -> Result<LockoutStatus> {
    let row = sign_in_throttle::Entity::find_by_id(keys.account.clone()).one(conn).await?;
    Ok(match row {
        Some(r) => LockoutStatus {
            failures: r.failures,
            locked_until: r.locked_until.filter(|u| *u > now),
        },
        None => LockoutStatus { failures: 0, locked_until: None },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> AuthPolicy {
        AuthPolicy { max_failures: 3, lockout: Duration::from_secs(600), ..Default::default() }
    }

    fn take(v: Verdict) -> Counter {
        match v {
            Verdict::Take(c) => c,
            Verdict::Refuse(s) => panic!("refused for {s} s"),
        }
    }

    #[test]
    fn delays_grow_exponentially_and_are_capped() {
        let delays: Vec<i64> = (0..12).map(delay_after).collect();
        assert_eq!(delays, vec![0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }

    #[test]
    fn the_account_rule_delays_then_locks_then_forgets() {
        let p = policy();
        let first = take(account_rule(None, &p, 100));
        assert_eq!((first.count, first.locked_until), (1, None));
        let second = take(account_rule(Some(first), &p, 100));
        assert_eq!(second.count, 2);
        // The third attempt waits out one second.
        assert_eq!(account_rule(Some(second), &p, 100), Verdict::Refuse(1));
        let third = take(account_rule(Some(second), &p, 101));
        assert_eq!(third.locked_until, Some(701));
        assert_eq!(account_rule(Some(third), &p, 102), Verdict::Refuse(599));
        // After the lockout a new streak starts.
        assert_eq!(take(account_rule(Some(third), &p, 701)).count, 1);
    }

    #[test]
    fn the_window_rule_caps_and_resets() {
        let mut c = None;
        for _ in 0..3 {
            c = Some(take(window_rule(c, 3, 60, 10)));
        }
        assert_eq!(window_rule(c, 3, 60, 20), Verdict::Refuse(50));
        assert_eq!(take(window_rule(c, 3, 60, 71)).count, 1);
    }
}
