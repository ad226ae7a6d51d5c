//! Argon2id password hashing off the async runtime, on at most one blocking thread per core,
//! so a burst of sign-ins queues instead of starving request handling.

use std::sync::{Arc, LazyLock};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::{OnceCell, Semaphore};

use crate::{Error, Result, config::AuthPolicy};

static HASHING_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
});

async fn on_hashing_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _slot = HASHING_SLOTS
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Error::Internal("hashing pool closed".into()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))
}

/// Hashes and verifies passwords with the configured Argon2id parameters.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist so
    /// unknown users cost the same time as known ones.
    dummy: Arc<OnceCell<String>>,
}

impl Passwords {
    pub fn new(policy: &AuthPolicy) -> Result<Self> {
        let params = Params::new(
            policy.argon2_memory_kib,
            policy.argon2_iterations,
            policy.argon2_parallelism,
            None,
        )
        .map_err(|e| Error::invalid("argon2 parameters", e.to_string()))?;
        Ok(Self { params, dummy: Arc::new(OnceCell::new()) })
    }

    fn hasher(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        on_hashing_pool(move || {
            let salt = SaltString::generate(&mut OsRng);
            Self::hasher(params).hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await?
        .map_err(|e| Error::Crypto(format!("password hashing failed: {e}")))
    }

    /// Checks `password` against a stored PHC string (its own parameters apply).
    pub async fn verify(&self, password: String, stored_hash: String) -> Result<bool> {
        let params = self.params.clone();
        on_hashing_pool(move || {
            PasswordHash::new(&stored_hash).is_ok_and(|h| {
                Self::hasher(params).verify_password(password.as_bytes(), &h).is_ok()
            })
        })
        .await
    }

    /// Spends the time of one verification without an account to check.
    pub async fn verify_dummy(&self, password: String) -> Result<()> {
        let dummy =
            self.dummy.get_or_try_init(|| self.hash(crate::crypto::random_secret())).await?.clone();
        self.verify(password, dummy).await.map(|_| ())
    }
}

/// Length limits for any password; new passwords also pass [`check_strength`].
pub fn check_policy(password: &str) -> Result<()> {
    let len = password.chars().count();
    if len < 8 {
        return Err(Error::invalid("password", "must be at least 8 characters"));
    }
    if len > 256 {
        return Err(Error::invalid("password", "must be at most 256 characters"));
    }
    Ok(())
}

/// Estimates strength with zxcvbn, penalising passwords built from the user's own email.
pub fn check_strength(password: &str, email: &str, min_score: u8) -> Result<()> {
    check_policy(password)?;
    let mut inputs: Vec<&str> = vec![email];
    if let Some((local, domain)) = email.split_once('@') {
        inputs.push(local);
        inputs.extend(domain.split('.'));
        inputs.extend(local.split(['.', '_', '-', '+']));
    }
    let squash = |s: &str| {
        s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>()
    };
    if let Some((local, _)) = email.split_once('@') {
        let local = squash(local);
        if local.chars().count() >= 4 && squash(password).contains(&local) {
            return Err(Error::invalid("password", "must not contain your email address"));
        }
    }
    let estimate = zxcvbn::zxcvbn(password, &inputs);
    let score = u8::from(estimate.score());
    if score < min_score {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "add more words or characters".into());
        return Err(Error::invalid("password", format!("is too easy to guess: {hint}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let p = Passwords::new(&AuthPolicy::default()).unwrap();
        let h = p.hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse battery".into(), h.clone()).await.unwrap());
        assert!(!p.verify("wrong".into(), h).await.unwrap());
        assert!(!p.verify("x".into(), "not a hash".into()).await.unwrap());
        p.verify_dummy("anything".into()).await.unwrap();
        assert!(check_policy("short").is_err());
    }

    #[test]
    fn weak_passwords_and_ones_made_of_the_email_are_refused() {
        assert!(check_strength("password1", "ada@example.com", 3).is_err());
        assert!(check_strength("ada@example.com", "ada@example.com", 3).is_err());
        assert!(check_strength("adalovelace", "ada.lovelace@example.com", 3).is_err());
        assert!(check_strength("Grace.Hopper.Example!", "grace.hopper@example.com", 3).is_err());
        assert!(check_strength("quartz violin ember lantern", "ada@example.com", 3).is_ok());
        assert!(check_strength("short", "ada@example.com", 0).is_err());
    }
}
