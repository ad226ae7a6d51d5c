//! Failed sign-in counters: exponential delay between attempts on an account, a temporary
//! lockout after too many, and a cap per client IP. Kept in the store so all nodes agree.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict,
};
use serde::Serialize;

use crate::{Error, Result, infra::config::AuthPolicy, infra::entity::sign_in_throttle};

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

/// Seconds to wait after `failures` consecutive failures: none for the first, then 1, 2, 4 … 60.
fn delay_after(failures: i32) -> i64 {
    if failures < 2 { 0 } else { 1i64 << (failures - 2).min(6) }.min(60)
}

pub async fn check<C: ConnectionTrait>(
    conn: &C,
    keys: &Keys,
    policy: &AuthPolicy,
    now: i64,
) -> Result<()> {
    let window = policy.lockout.as_secs() as i64;
    if let Some(row) = sign_in_throttle::Entity::find_by_id(keys.account.clone()).one(conn).await? {
        if let Some(until) = row.locked_until.filter(|u| *u > now) {
            return Err(Error::RateLimited { retry_after_secs: (until - now) as u64 });
        }
        let fresh = now - row.first_failure_at <= window;
        let next_allowed = row.last_failure_at + delay_after(row.failures);
        if fresh && now < next_allowed {
            return Err(Error::RateLimited { retry_after_secs: (next_allowed - now) as u64 });
        }
    }
    if let Some(ip) = &keys.ip
        && let Some(row) = sign_in_throttle::Entity::find_by_id(ip.clone()).one(conn).await?
        && now - row.first_failure_at <= window
        && row.failures >= policy.ip_max_failures as i32
    {
        return Err(Error::RateLimited {
            retry_after_secs: (row.first_failure_at + window - now).max(1) as u64,
        });
    }
    Ok(())
}

/// Counts a failure against the account and IP; returns true when this failure locked the account.
pub async fn record_failure<C: ConnectionTrait>(
    conn: &C,
    keys: &Keys,
    policy: &AuthPolicy,
    now: i64,
) -> Result<bool> {
    let window = policy.lockout.as_secs() as i64;
    let mut locked = false;
    for (key, lockable) in
        std::iter::once((&keys.account, true)).chain(keys.ip.iter().map(|ip| (ip, false)))
    {
        let existing = sign_in_throttle::Entity::find_by_id(key.clone()).one(conn).await?;
        let (failures, first) = match &existing {
            // A lockout that has run out, or an old streak, starts a new count.
            Some(r)
                if now - r.first_failure_at <= window && r.locked_until.is_none_or(|u| u > now) =>
            {
                (r.failures + 1, r.first_failure_at)
            }
            _ => (1, now),
        };
        let lock = lockable && failures >= policy.max_failures as i32;
        locked |= lock;
        let model = sign_in_throttle::ActiveModel {
            key: Set(key.clone()),
            failures: Set(failures),
            first_failure_at: Set(first),
            last_failure_at: Set(now),
            locked_until: Set(lock.then_some(now + window)),
        };
        match existing {
            Some(_) => {
                model.update(conn).await?;
            }
            None => {
                sign_in_throttle::Entity::insert(model)
                    .on_conflict(
                        OnConflict::column(sign_in_throttle::Column::Key)
                            .update_columns([
                                sign_in_throttle::Column::Failures,
                                sign_in_throttle::Column::LastFailureAt,
                                sign_in_throttle::Column::LockedUntil,
                            ])
                            .to_owned(),
                    )
                    .exec_without_returning(conn)
                    .await?;
            }
        }
    }
    Ok(locked)
}

/// Counts one request against `key` in a fixed window; refuses once `limit` is reached. Used for
/// requests that send mail (sign-up codes, reset links), which must not become a mail cannon.
pub async fn hit<C: ConnectionTrait>(
    conn: &C,
    key: &str,
    limit: u32,
    window: i64,
    now: i64,
) -> Result<()> {
    let existing = sign_in_throttle::Entity::find_by_id(key.to_owned()).one(conn).await?;
    let (count, first) = match &existing {
        Some(r) if now - r.first_failure_at <= window => {
            if r.failures >= limit as i32 {
                return Err(Error::RateLimited {
                    retry_after_secs: (r.first_failure_at + window - now).max(1) as u64,
                });
            }
            (r.failures + 1, r.first_failure_at)
        }
        _ => (1, now),
    };
    let model = sign_in_throttle::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(count),
        first_failure_at: Set(first),
        last_failure_at: Set(now),
        locked_until: Set(None),
    };
    match existing {
        Some(_) => {
            model.update(conn).await?;
        }
        None => {
            sign_in_throttle::Entity::insert(model)
                .on_conflict(
                    OnConflict::column(sign_in_throttle::Column::Key)
                        .update_columns([
                            sign_in_throttle::Column::Failures,
                            sign_in_throttle::Column::LastFailureAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
        }
    }
    Ok(())
}

/// A successful sign-in clears the account's streak (the IP's count stays).
pub async fn record_success<C: ConnectionTrait>(conn: &C, keys: &Keys) -> Result<()> {
    sign_in_throttle::Entity::delete_by_id(keys.account.clone()).exec(conn).await?;
    Ok(())
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
    use super::delay_after;

    #[test]
    fn delays_grow_exponentially_and_are_capped() {
        let delays: Vec<i64> = (0..12).map(delay_after).collect();
        assert_eq!(delays, vec![0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
    }
}
