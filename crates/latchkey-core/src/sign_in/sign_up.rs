//! Sign-up with an emailed 6-digit code: the account exists only once the code is entered.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use serde_json::json;

use super::{ClientInfo, SignInService, SignedIn, Verified, VerifiedSubject};
use crate::{
    Error, Result,
    identity::{method::AuthMethod, passwords, users::normalize_email},
    infra::audit,
    infra::crypto::{constant_time_eq, random_digits},
    infra::entity::sign_up_attempt,
    infra::ids,
    infra::mail::MailKind,
};

/// The mailed code's lifetime, as the mail itself states it.
const CODE_TTL_SECS: i64 = crate::infra::mail::SIGN_UP_CODE_VALIDITY.as_secs() as i64;

/// A started sign-up waiting for its code. The id goes in the verification page's URL; it is
/// useless without the code.
#[derive(Debug, Clone, Serialize)]
pub struct PendingSignUp {
    pub id: String,
    pub email: String,
    pub expires_at: i64,
}

impl SignInService {
    /// Checks the address and password, then mails a code. An address that already has an
    /// account gets the same answer and no code, so the form cannot be used to probe accounts.
    pub async fn start_sign_up(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<PendingSignUp> {
        let email = normalize_email(email)?;
        self.require_password_route(&email).await.map_err(|_| {
            Error::invalid("email", "signs in through its organisation's identity provider")
        })?;
        passwords::check_strength(password, &email, self.policy.password_min_score)?;
        self.limit_mail_requests("sign_up", &email, client).await?;
        let hash = self.passwords.hash(password.to_owned()).await?;
        let exists = self.users.find_by_email(&email).await?.is_some();
        let id = ids::new_id(ids::SIGN_UP_ATTEMPT);
        let code = random_digits(6);
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        sign_up_attempt::ActiveModel {
            id: Set(id.clone()),
            email: Set(email.clone()),
            password_hash: Set(hash),
            code_mac: Set(if exists {
                String::new()
            } else {
                self.store.master_key().mac_hex(&sign_up_code_purpose(&id), &code)
            }),
            attempts: Set(0),
            expires_at: Set(now + CODE_TTL_SECS),
            created_at: Set(now),
            completed_at: Set(None),
            client_ip: Set(client.ip.clone()),
        }
        .insert(&txn)
        .await?;
        if !exists {
            self.mail.enqueue(&txn, &email, MailKind::SignUpCode { code }).await?;
        }
        crate::infra::audit::record(
            &txn,
            now,
            &client.actor_for(None),
            "sign_up.started",
            Some(&id),
            json!({ "email": email }),
        )
        .await?;
        txn.commit().await?;
        self.mail.notify();
        Ok(PendingSignUp { id, email, expires_at: now + CODE_TTL_SECS })
    }

    pub async fn pending_sign_up(&self, id: &str) -> Result<PendingSignUp> {
        let row = sign_up_attempt::Entity::find_by_id(id.to_owned())
            .one(self.store.db())
            .await?
            .filter(|r| r.completed_at.is_none() && r.expires_at > self.store.now())
            .ok_or_else(|| Error::NotFound("sign-up".into()))?;
        Ok(PendingSignUp { id: row.id, email: row.email, expires_at: row.expires_at })
    }

    /// Checks the code; on success creates the verified account and signs it in, all in one
    /// transaction with the code's use. Each try is counted before the comparison, so parallel
    /// guesses cannot exceed the limit; five wrong codes or ten minutes void the attempt.
    pub async fn complete_sign_up(
        &self,
        id: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let row = reserve_try(&txn, id, now).await?;
        let expected = &row.code_mac;
        let given = self.store.master_key().mac_hex(&sign_up_code_purpose(id), code.trim());
        if expected.is_empty() || !constant_time_eq(expected, &given) {
            let actor = client.actor_for(None);
            let data = json!({ "email": row.email });
            audit::record(&txn, now, &actor, "sign_up.code_failed", Some(id), data).await?;
            // The counted try stays counted.
            txn.commit().await?;
            let left = CODE_MAX_ATTEMPTS - row.attempts;
            return Err(Error::invalid(
                "code",
                if left > 0 {
                    format!("is not correct ({left} attempts left)")
                } else {
                    "is not correct; start again".into()
                },
            ));
        }
        sign_up_attempt::Entity::update_many()
            .col_expr(sign_up_attempt::Column::CompletedAt, Expr::value(now))
            .filter(sign_up_attempt::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let verified = Verified {
            method: AuthMethod::Password,
            subject: VerifiedSubject::NewAccount {
                email: row.email,
                password_hash: row.password_hash,
            },
            join: None,
            upstream_session: None,
        };
        let signed_in = self.complete_in(&txn, &verified, client, None, now).await?;
        txn.commit().await?;
        Ok(signed_in)
    }
}

/// Counts one try of a sign-up's code, before it is compared: the row as counted, or the error
/// to show when the sign-up is used, expired or out of tries.
async fn reserve_try<C: ConnectionTrait>(
    txn: &C,
    id: &str,
    now: i64,
) -> Result<sign_up_attempt::Model> {
    let counted = sign_up_attempt::Entity::update_many()
        .col_expr(
            sign_up_attempt::Column::Attempts,
            Expr::col(sign_up_attempt::Column::Attempts).add(1),
        )
        .filter(sign_up_attempt::Column::Id.eq(id))
        .filter(sign_up_attempt::Column::CompletedAt.is_null())
        .filter(sign_up_attempt::Column::ExpiresAt.gt(now))
        .filter(sign_up_attempt::Column::Attempts.lt(CODE_MAX_ATTEMPTS))
        .exec_with_returning(txn)
        .await?;
    if let Some(row) = counted.into_iter().next() {
        return Ok(row);
    }
    let row = sign_up_attempt::Entity::find_by_id(id.to_owned()).one(txn).await?;
    Err(match row.filter(|r| r.completed_at.is_none()) {
        None => Error::invalid("code", "this sign-up is no longer valid; start again"),
        Some(_) => Error::invalid("code", "the code has expired; start again"),
    })
}

/// Failed attempts left before a code is void.
pub const CODE_MAX_ATTEMPTS: i32 = 5;

fn sign_up_code_purpose(id: &str) -> String {
    format!("sign_up_code:{id}")
}
