//! Sign-up with an emailed 6-digit code: the account exists only once the code is entered.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde::Serialize;
use serde_json::json;

use super::{AuthService, CODE_MAX_ATTEMPTS, ClientInfo, SignedIn, sign_up_code_purpose};
use crate::{
    Error, Result,
    identity::passwords,
    identity::users::{NewUser, normalize_email},
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

impl AuthService {
    /// Checks the address and password, then mails a code. An address that already has an
    /// account gets the same answer and no code, so the form cannot be used to probe accounts.
    pub async fn start_sign_up(
        &self,
        email: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<PendingSignUp> {
        let email = normalize_email(email)?;
        passwords::check_strength(password, &email, self.policy.password_min_score)?;
        self.limit_mail_requests("sign_up", &email, client).await?;
        let hash = self.passwords.hash(password.to_owned()).await?;
        let exists = self.users.find_by_email(&email).await?.is_some();
        let id = ids::new_id("sua");
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

    /// Checks the code; on success creates the verified account and signs it in.
    /// Five wrong codes or ten minutes void the attempt.
    pub async fn complete_sign_up(
        &self,
        id: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<SignedIn> {
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let row = sign_up_attempt::Entity::find_by_id(id.to_owned()).one(&txn).await?;
        let Some(row) = row.filter(|r| r.completed_at.is_none()) else {
            return Err(Error::invalid("code", "this sign-up is no longer valid; start again"));
        };
        if row.expires_at <= now || row.attempts >= CODE_MAX_ATTEMPTS {
            return Err(Error::invalid("code", "the code has expired; start again"));
        }
        let expected = &row.code_mac;
        let given = self.store.master_key().mac_hex(&sign_up_code_purpose(id), code.trim());
        if expected.is_empty() || !constant_time_eq(expected, &given) {
            // Count the attempt atomically so parallel guesses cannot exceed the limit.
            sign_up_attempt::Entity::update_many()
                .col_expr(
                    sign_up_attempt::Column::Attempts,
                    Expr::col(sign_up_attempt::Column::Attempts).add(1),
                )
                .filter(sign_up_attempt::Column::Id.eq(id))
                .exec(&txn)
                .await?;
            crate::infra::audit::record(
                &txn,
                now,
                &client.actor_for(None),
                "sign_up.code_failed",
                Some(id),
                json!({ "email": row.email }),
            )
            .await?;
            txn.commit().await?;
            let left = CODE_MAX_ATTEMPTS - row.attempts - 1;
            return Err(Error::invalid(
                "code",
                if left > 0 {
                    format!("is not correct ({left} attempts left)")
                } else {
                    "is not correct; start again".into()
                },
            ));
        }
        let claimed = sign_up_attempt::Entity::update_many()
            .col_expr(sign_up_attempt::Column::CompletedAt, Expr::value(now))
            .filter(sign_up_attempt::Column::Id.eq(id))
            .filter(sign_up_attempt::Column::CompletedAt.is_null())
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            return Err(Error::invalid("code", "this sign-up is no longer valid; start again"));
        }
        txn.commit().await?;

        let actor = client.actor_for(None);
        let user = self
            .users
            .create_with_hash(
                NewUser { email: row.email.clone(), email_verified: true, ..Default::default() },
                Some(row.password_hash),
                &actor,
            )
            .await?;
        // Organisations that enrolled this email domain offer an invitation or a join
        // suggestion; a failure there must not undo a finished sign-up.
        if let Err(e) = self.enrollment.on_sign_up(&user).await {
            tracing::error!(error = %e, user_id = %user.id, "domain enrollment after sign-up failed");
        }
        let actor = client.actor_for(Some(&user.id));
        let (session, secret) =
            self.sessions.create(&user.id, client.session_origin("password"), &actor).await?;
        crate::infra::audit::record(
            self.store.db(),
            now,
            &actor,
            "sign_up.completed",
            Some(&user.id),
            json!({ "email": user.primary_email }),
        )
        .await?;
        Ok(SignedIn { user, session, secret })
    }
}

use sea_orm::sea_query::ExprTrait as _;
