//! The master key (encrypts secrets at rest) and the hashing of bearer secrets.

use std::{fs, io::Write, path::Path};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{
    Error, Result,
    infra::config::{ConfigError, MasterKeySource, Settings},
};

const SEALED_PREFIX: &str = "v1.";

/// XChaCha20-Poly1305 key that seals secrets stored in the database (private keys, and later
/// upstream client secrets). Each sealed value is bound to its purpose through the AEAD's
/// associated data, so a ciphertext moved to another row fails to open.
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
    /// Key for MACs over short one-time codes, derived so it never equals the encryption key.
    mac_key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(Error::Crypto("master key must be 32 bytes".into()));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|_| Error::Crypto("master key must be 32 bytes".into()))?;
        let mut h = Sha256::new();
        h.update(b"latchkey mac key v1");
        h.update(bytes);
        Ok(Self { cipher, mac_key: Zeroizing::new(h.finalize().into()) })
    }

    /// Decodes the base64 text form used in `LATCHKEY_MASTER_KEY` and in the key file.
    pub fn from_text(text: &str) -> Option<Self> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
                .ok()?,
        );
        Self::from_bytes(&bytes).ok()
    }

    pub fn generate_text() -> String {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        URL_SAFE_NO_PAD.encode(bytes.as_ref())
    }

    /// Loads the key named by the settings; on first start, generates the default key file
    /// with 0600 permissions.
    pub fn load_or_create(settings: &Settings) -> Result<Self> {
        match Self::load(settings)? {
            Some(key) => Ok(key),
            None => Self::create_default(settings),
        }
    }

    /// Loads the key named by the settings, writing nothing. None when the default key file
    /// does not exist yet: [`Self::create_default`] makes it, once the store has opened (a
    /// database that cannot be reached must not leave a new key behind).
    pub fn load(settings: &Settings) -> Result<Option<Self>> {
        match &settings.master_key {
            MasterKeySource::Inline(text) => Self::from_text(text).map(Some).ok_or_else(|| {
                ConfigError::new(
                    "LATCHKEY_MASTER_KEY",
                    "32 random bytes in base64 (generate with `openssl rand -base64 32`)",
                    "a value that is not 32 bytes of base64",
                )
                .into()
            }),
            MasterKeySource::File { path, generate } => {
                if !path.exists() {
                    if *generate {
                        return Ok(None);
                    }
                    return Err(ConfigError::new(
                        "LATCHKEY_MASTER_KEY_FILE",
                        "the path of an existing key file",
                        format!("{} (no such file)", path.display()),
                    )
                    .into());
                }
                Self::read_file(path).map(Some)
            }
        }
    }

    /// Generates the default key file (first start) and loads it.
    pub fn create_default(settings: &Settings) -> Result<Self> {
        let MasterKeySource::File { path, generate: true } = &settings.master_key else {
            return Err(Error::Internal("only the default master key file is generated".into()));
        };
        // Nodes starting together on one data directory may race to create it: one wins, the
        // others read the winner's key.
        if publish_private_file(path, Self::generate_text().as_bytes())? {
            tracing::info!(path = %path.display(), "generated a new master key");
        }
        Self::read_file(path)
    }

    fn read_file(path: &Path) -> Result<Self> {
        let text = Zeroizing::new(
            fs::read_to_string(path)
                .map_err(|source| Error::Io { path: path.display().to_string(), source })?,
        );
        Self::from_text(&text).ok_or_else(|| {
            ConfigError::new(
                "LATCHKEY_MASTER_KEY_FILE",
                "a file holding 32 random bytes in base64",
                format!("{} (unreadable key)", path.display()),
            )
            .into()
        })
    }

    /// HMAC-SHA256 of `data` for `purpose`, hex. Used for low-entropy one-time codes, which a
    /// plain hash would not protect if the database leaked.
    pub fn mac_hex(&self, purpose: &str, data: &str) -> String {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.mac_key.as_ref()) else {
            return String::new();
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<String> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload { msg: plaintext, aad: purpose.as_bytes() },
            )
            .map_err(|_| Error::Crypto("encryption failed".into()))?;
        let mut out = Vec::with_capacity(24 + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| Error::Crypto("unknown sealed-value format".into()))?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| Error::Crypto("sealed value is not base64".into()))?;
        if raw.len() < 24 + 16 {
            return Err(Error::Crypto("sealed value is truncated".into()));
        }
        let (nonce, ciphertext) = raw.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload { msg: ciphertext, aad: purpose.as_bytes() },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                Error::Crypto(
                    "cannot decrypt a stored secret: wrong master key or corrupt data".into(),
                )
            })
    }
}

/// Writes a file only its owner can read, creating parent directories (0700) as needed.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |source| Error::Io { path: path.display().to_string(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// Writes `contents` to `path` all at once, unless the file already exists: written under a
/// temporary name, then hard-linked into place (which fails if the name is taken). So processes
/// that start together on one data directory never read a half-written file, and all use the
/// first one's contents. Returns false when another process's file was there first.
fn publish_private_file(path: &Path, contents: &[u8]) -> Result<bool> {
    let io_err = |source| Error::Io { path: path.display().to_string(), source };
    let tmp = path.with_extension(format!("tmp-{}", ulid::Ulid::new()));
    write_private_file(&tmp, contents)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err(e)),
    }
}

pub fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// A random numeric code of `digits` digits (for codes typed by people).
pub fn random_digits(digits: u32) -> String {
    use rand::Rng;
    let n = rand::rng().random_range(0..10u64.pow(digits));
    format!("{n:0width$}", width = digits as usize)
}

/// Compares two strings in constant time (for secrets and codes).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A fresh bearer secret: 256 random bits, URL-safe.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Bearer secrets carry 256 bits of entropy, so one SHA-256 is enough to store them safely;
/// a slow hash would only slow down every request.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn hash_secret_hex(secret: &str) -> String {
    hex(&hash_secret(secret))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_text(&MasterKey::generate_text()).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn sealed_values_open_only_with_their_purpose_and_key() -> Result<()> {
        let k = key();
        let sealed = k.seal("signing_key:a", b"secret")?;
        assert_eq!(k.open("signing_key:a", &sealed)?.as_slice(), b"secret");
        assert!(k.open("signing_key:b", &sealed).is_err());
        assert!(key().open("signing_key:a", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open("signing_key:a", &tampered).is_err());
        assert!(k.open("signing_key:a", "v1.").is_err());
        assert!(k.open("signing_key:a", "garbage").is_err());
        Ok(())
    }

    #[test]
    fn secrets_hash_to_hex() {
        let s = random_secret();
        assert_eq!(s.len(), 43);
        assert_eq!(hash_secret_hex(&s).len(), 64);
        assert_eq!(hash_secret_hex("abc"), hash_secret_hex("abc"));
        assert!(MasterKey::from_text("too-short").is_none());
    }
}
