//! Password reset by emailed link: single use, 30 minutes, signs out every session, and marks
//! the address verified (the link proves control of it).

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde_json::json;

use super::{ClientInfo, SignInService};
use crate::{
    Error, Result, identity::model::UserStatus, identity::passwords,
    identity::users::normalize_email, infra::crypto, infra::entity::password_reset, infra::ids,
    infra::mail::MailKind,
};

const RESET_TTL_SECS: i64 = crate::infra::mail::PASSWORD_RESET_VALIDITY.as_secs() as i64;

impl SignInService {
    /// Mails a reset link if the address belongs to an active account; otherwise does nothing,
    /// and the caller shows the same message either way.
    pub async fn request_password_reset(&self, email: &str, client: &ClientInfo) -> Result<()> {
        let now = self.store.now();
        let Ok(email) = normalize_email(email) else { return Ok(()) };
        self.limit_mail_requests("password_reset", &email, client).await?;
        // An address its organisation sends through an enterprise connection has no password to
        // reset; it gets the same answer as an address without an account.
        let password_route = self.require_password_route(&email).await.is_ok();
        let Some(user) = self
            .users
            .find_by_email(&email)
            .await?
            .filter(|u| u.status == UserStatus::Active && password_route)
        else {
            crate::infra::audit::record(
                self.store.db(),
                now,
                &client.actor_for(None),
                "password.reset_requested",
                None,
                json!({ "email": email, "account": false }),
            )
            .await?;
            return Ok(());
        };
        let token = crypto::random_secret();
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        password_reset::ActiveModel {
            id: Set(ids::new_id(ids::PASSWORD_RESET)),
            user_id: Set(user.id.clone()),
            token_hash: Set(crypto::hash_secret_hex(&token)),
            expires_at: Set(now + RESET_TTL_SECS),
            used_at: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let link = format!("{}/password/reset?token={token}", self.public_url);
        self.mail.enqueue(&txn, &user.primary_email, MailKind::PasswordReset { link }).await?;
        crate::infra::audit::record(
            &txn,
            now,
            &client.actor_for(None),
            "password.reset_requested",
            Some(&user.id),
            json!({ "email": email, "account": true }),
        )
        .await?;
        txn.commit().await?;
        self.mail.notify();
        Ok(())
    }

    /// True when the link's token can still be used (for showing the form).
    pub async fn password_reset_is_valid(&self, token: &str) -> Result<bool> {
        Ok(self.find_reset(token).await?.is_some())
    }

    async fn find_reset(&self, token: &str) -> Result<Option<password_reset::Model>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        Ok(password_reset::Entity::find()
            .filter(password_reset::Column::TokenHash.eq(crypto::hash_secret_hex(token)))
            .one(self.store.db())
            .await?
            .filter(|r| r.used_at.is_none() && r.expires_at > self.store.now()))
    }

    /// Sets a new password through a reset link. The link works once; every session of the
    /// user is revoked, since whoever had them may be the reason for the reset.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        let invalid = || Error::invalid("token", "this reset link is invalid, used or expired");
        let reset = self.find_reset(token).await?.ok_or_else(invalid)?;
        let user = self.users.get(&reset.user_id).await?;
        passwords::check_strength(
            new_password,
            &user.primary_email,
            self.policy.password_min_score,
        )?;
        let hash = self.passwords.hash(new_password.to_owned()).await?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let used = password_reset::Entity::update_many()
            .col_expr(password_reset::Column::UsedAt, Expr::value(now))
            .filter(password_reset::Column::Id.eq(reset.id.as_str()))
            .filter(password_reset::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if used.rows_affected != 1 {
            return Err(invalid());
        }
        self.users.set_password_hash(&txn, &user.id, hash).await?;
        // Other outstanding links die with this one.
        password_reset::Entity::update_many()
            .col_expr(password_reset::Column::UsedAt, Expr::value(now))
            .filter(password_reset::Column::UserId.eq(user.id.as_str()))
            .filter(password_reset::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        let revoked =
            crate::identity::sessions::revoke_user_sessions(&txn, &user.id, "password_reset", now)
                .await?;
        // The link went to the account's address: using it proves control of that address.
        let verified =
            crate::identity::users::mark_email_verified(&txn, &user.id, &user.primary_email, now)
                .await?;
        crate::infra::store::Store::bump_revision(&txn).await?;
        crate::infra::audit::record(
            &txn,
            now,
            &client.actor_for(Some(&user.id)),
            "password.reset",
            Some(&user.id),
            json!({ "sessions_revoked": revoked }),
        )
        .await?;
        if verified {
            crate::infra::audit::record(
                &txn,
                now,
                &client.actor_for(Some(&user.id)),
                "email.verified",
                Some(&user.id),
                json!({ "email": user.primary_email, "method": "password_reset" }),
            )
            .await?;
        }
        txn.commit().await?;
        self.store.notify_jobs();
        Ok(())
    }
}
