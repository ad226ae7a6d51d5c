//! Argon2id password hashing off the async runtime, on at most one blocking thread per core,
//! so a burst of logins queues instead of starving request handling.

use std::sync::{Arc, LazyLock};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::{Error, Result};

static HASHING_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
});

/// Argon2id with the library defaults, which are OWASP's (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

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

pub async fn hash(password: String) -> Result<String> {
    on_hashing_pool(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await?
    .map_err(|e| Error::Crypto(format!("password hashing failed: {e}")))
}

pub async fn verify(password: String, stored_hash: String) -> Result<bool> {
    on_hashing_pool(move || {
        PasswordHash::new(&stored_hash)
            .is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
}

/// Minimal policy for operator-set passwords; the sign-up flow adds a strength estimate.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery".into(), h.clone()).await.unwrap());
        assert!(!verify("wrong".into(), h).await.unwrap());
        assert!(!verify("x".into(), "not a hash".into()).await.unwrap());
        assert!(check_policy("short").is_err());
    }
}
