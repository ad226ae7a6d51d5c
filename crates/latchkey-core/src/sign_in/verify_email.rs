//! Email verification by emailed link, for an account whose address is not verified yet (made
//! from the CLI, say): single use, expiring, stored as a SHA-256, rate-limited like every mail a
//! request can trigger, audited. Opening the link proves control of the address.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde_json::json;

use super::{ClientInfo, SignInService};
use crate::{
    Error, Result,
    identity::model::{User, UserStatus},
    identity::users::mark_email_verified,
    infra::audit,
    infra::crypto,
    infra::entity::email_verification,
    infra::ids,
    infra::mail::{EMAIL_VERIFICATION_VALIDITY, MailKind},
    infra::store::Store,
};

const VERIFICATION_TTL_SECS: i64 = EMAIL_VERIFICATION_VALIDITY.as_secs() as i64;

/// What a request for a verification link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationRequest {
    /// A link went to this address.
    Sent { email: String },
    /// Nothing to do: the address is verified already.
    AlreadyVerified,
}

impl SignInService {
    /// Mails the signed-in user a link that verifies their primary address. `return_to` (a
    /// path or URL the caller has checked) is where the link leads once it has been used.
    pub async fn request_email_verification(
        &self,
        user_id: &str,
        return_to: Option<&str>,
        client: &ClientInfo,
    ) -> Result<VerificationRequest> {
        let user = self.users.get(user_id).await?;
        if user.email_verified {
            return Ok(VerificationRequest::AlreadyVerified);
        }
        if user.status != UserStatus::Active {
            return Err(Error::Forbidden("the account is not active".into()));
        }
        let email = user.primary_email.clone();
        self.limit_mail_requests("email_verification", &email, client).await?;
        let token = crypto::random_secret();
        let link = self.verification_link(&token, return_to)?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        email_verification::ActiveModel {
            id: Set(ids::new_id(ids::EMAIL_VERIFICATION)),
            user_id: Set(user.id.clone()),
            email: Set(email.clone()),
            token_hash: Set(crypto::hash_secret_hex(&token)),
            expires_at: Set(now + VERIFICATION_TTL_SECS),
            used_at: Set(None),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        self.mail.enqueue(&txn, &email, MailKind::EmailVerification { link }).await?;
        audit::record(
            &txn,
            now,
            &client.actor_for(Some(&user.id)),
            "email.verification_requested",
            Some(&user.id),
            json!({ "email": email }),
        )
        .await?;
        txn.commit().await?;
        self.mail.notify();
        Ok(VerificationRequest::Sent { email })
    }

    fn verification_link(&self, token: &str, return_to: Option<&str>) -> Result<String> {
        let mut url = url::Url::parse(&format!("{}/email/verify", self.public_url))
            .map_err(|e| Error::Internal(format!("verification link: {e}")))?;
        url.query_pairs_mut().append_pair("token", token);
        if let Some(r) = return_to.filter(|r| !r.is_empty()) {
            url.query_pairs_mut().append_pair("return_to", r);
        }
        Ok(url.into())
    }

    /// True when the link's token can still be used (for showing the confirmation form).
    pub async fn email_verification_is_valid(&self, token: &str) -> Result<bool> {
        Ok(self.find_verification(token).await?.is_some())
    }

    async fn find_verification(&self, token: &str) -> Result<Option<email_verification::Model>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        Ok(email_verification::Entity::find()
            .filter(email_verification::Column::TokenHash.eq(crypto::hash_secret_hex(token)))
            .one(self.store.db())
            .await?
            .filter(|v| v.used_at.is_none() && v.expires_at > self.store.now()))
    }

    /// Uses a verification link: the address it was sent to becomes verified, if it is still
    /// the account's address. The link works once; other outstanding links die with it.
    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<User> {
        let invalid =
            || Error::invalid("token", "this verification link is invalid, used or expired");
        let found = self.find_verification(token).await?.ok_or_else(invalid)?;
        let now = self.store.now();
        let txn = self.store.begin_write().await?;
        let used = email_verification::Entity::update_many()
            .col_expr(email_verification::Column::UsedAt, Expr::value(now))
            .filter(email_verification::Column::Id.eq(found.id.as_str()))
            .filter(email_verification::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        // A concurrent use of the same link got there first.
        if used.rows_affected != 1 {
            return Err(invalid());
        }
        // Other outstanding links die with this one.
        email_verification::Entity::update_many()
            .col_expr(email_verification::Column::UsedAt, Expr::value(now))
            .filter(email_verification::Column::UserId.eq(found.user_id.as_str()))
            .filter(email_verification::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if !mark_email_verified(&txn, &found.user_id, &found.email, now).await? {
            // The address changed, or was verified some other way, since the link was sent.
            txn.commit().await?;
            return self.users.get(&found.user_id).await;
        }
        audit::record(
            &txn,
            now,
            &client.actor_for(Some(&found.user_id)),
            "email.verified",
            Some(&found.user_id),
            json!({ "email": found.email, "method": "link" }),
        )
        .await?;
        // Like a sign-up: a verified address may now be invited or suggested by its domain.
        crate::tenancy::enrollment::enroll_new_user(&txn, &found.user_id, now).await?;
        Store::bump_revision(&txn).await?;
        txn.commit().await?;
        self.users.get(&found.user_id).await
    }
}
