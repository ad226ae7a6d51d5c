//! Argon2id password hashing off the async runtime, on at most one blocking thread per core,
//! so a burst of sign-ins queues instead of starving request handling.

use std::sync::{Arc, LazyLock};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, SaltString, rand_core::OsRng},
};
use tokio::sync::{OnceCell, Semaphore};

use crate::{Error, Result, infra::config::AuthPolicy};

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

/// Argon2 working memory kept between hashes. A fresh 19 MiB buffer per hash costs page faults
/// and zeroing (a quarter of each sign-in's CPU in a profile); the pool holds at most one buffer
/// per hashing slot, so at most one per core.
#[derive(Default)]
struct MemoryPool {
    free: std::sync::Mutex<Vec<Vec<Block>>>,
}

impl MemoryPool {
    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let reused =
            self.free.lock().ok().and_then(|mut free| free.pop()).filter(|m| m.len() >= blocks);
        let mut memory = reused.unwrap_or_else(|| vec![Block::default(); blocks]);
        let result = f(&mut memory[..blocks]);
        if let Ok(mut free) = self.free.lock() {
            free.push(memory);
        }
        result
    }
}

/// Runs Argon2 for `hash`'s algorithm, version and parameters on `password` and its salt,
/// writing the raw output; the PHC string's own parameters apply, not the configured ones.
fn argon2_raw(pool: &MemoryPool, hash: &PasswordHash<'_>, password: &[u8]) -> Option<Output> {
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = hash.version.map_or(Ok(Version::V0x13), Version::try_from).ok()?;
    let params = Params::try_from(hash).ok()?;
    let expected = hash.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt_buf).ok()?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    pool.with(params.block_count(), |memory| {
        argon.hash_password_into_with_memory(password, salt, &mut out, memory)
    })
    .ok()?;
    Output::new(&out).ok()
}

/// Hashes and verifies passwords with the configured Argon2id parameters.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    memory: Arc<MemoryPool>,
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
        Ok(Self {
            params,
            memory: Arc::new(MemoryPool::default()),
            dummy: Arc::new(OnceCell::new()),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        let pool = self.memory.clone();
        on_hashing_pool(move || {
            let salt = SaltString::generate(&mut OsRng);
            let mut salt_buf = [0u8; 64];
            let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| e.to_string())?;
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            pool.with(params.block_count(), |memory| {
                argon.hash_password_into_with_memory(
                    password.as_bytes(),
                    salt_bytes,
                    &mut out,
                    memory,
                )
            })
            .map_err(|e| e.to_string())?;
            let output = Output::new(&out).map_err(|e| e.to_string())?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: argon2::password_hash::ParamsString::try_from(&params)
                    .map_err(|e| e.to_string())?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok::<_, String>(phc.to_string())
        })
        .await?
        .map_err(|e| Error::Crypto(format!("password hashing failed: {e}")))
    }

    /// Checks `password` against a stored PHC string (its own parameters apply), comparing
    /// the outputs in constant time.
    pub async fn verify(&self, password: String, stored_hash: String) -> Result<bool> {
        let pool = self.memory.clone();
        on_hashing_pool(move || {
            let Ok(hash) = PasswordHash::new(&stored_hash) else { return false };
            match (argon2_raw(&pool, &hash, password.as_bytes()), hash.hash) {
                (Some(computed), Some(expected)) => computed == expected,
                _ => false,
            }
        })
        .await
    }

    /// Spends the time of one verification without an account to check.
    pub async fn verify_dummy(&self, password: String) -> Result<()> {
        let dummy = self
            .dummy
            .get_or_try_init(|| self.hash(crate::infra::crypto::random_secret()))
            .await?
            .clone();
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
            .and_then(|f| f.warning().map(|w| clause(&w.to_string())))
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "add more words or characters".into());
        return Err(Error::invalid("password", format!("is too easy to guess: {hint}")));
    }
    Ok(())
}

/// zxcvbn's warnings are sentences ("This is a very common password."); the refusal carries
/// one as a clause after a colon, and every caller ends the message with its own full stop.
fn clause(sentence: &str) -> String {
    let trimmed = sentence.trim().trim_end_matches(['.', '!']).trim_end();
    let mut chars = trimmed.chars();
    match chars.next() {
        // Only a capital that starts an ordinary word is lowered ("This", not "I" or "ABC").
        Some(first)
            if first.is_uppercase() && chars.clone().next().is_some_and(char::is_lowercase) =>
        {
            first.to_lowercase().chain(chars).collect()
        }
        _ => trimmed.to_owned(),
    }
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

    #[test]
    fn the_strength_refusal_reads_as_one_sentence() {
        let Err(Error::Invalid { message, .. }) = check_strength("password1", "ada@example.com", 3)
        else {
            unreachable!("a common password must be refused")
        };
        assert!(message.starts_with("is too easy to guess: "), "{message}");
        let hint = &message["is too easy to guess: ".len()..];
        assert!(hint.starts_with(char::is_lowercase), "odd capital after the colon: {message}");
        assert!(!message.ends_with('.'), "callers add the full stop: {message}");
        // What the pages show: one sentence, one full stop.
        let shown = format!("The password {message}.");
        assert!(!shown.contains(".."), "{shown}");
        assert_eq!(shown.matches('.').count(), 1, "{shown}");
        assert_eq!(clause("This is a very common password."), "this is a very common password");
        assert_eq!(clause("ABC is short!"), "ABC is short");
        assert_eq!(clause(""), "");
    }
}
