//! The key that seals TOTP secrets. Unlike passwords and tokens, a TOTP secret is needed in
//! clear to check a code, so it cannot be a digest: it is sealed with AES-256-GCM under a key
//! kept outside the database (`mfa.key` or `mfa.key_file`), so a copy of the database alone
//! yields no secret. The user's id is the associated data: a sealed secret moved to another
//! user's row does not open.
use std::{io::Write, path::Path};

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use sha2::{Digest, Sha256};

use crate::{config, crypto};

const NONCE_BYTES: usize = 12;

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the MFA key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the MFA key file {0} does not hold 64 hex characters")]
    Malformed(String),
    #[error("cannot create the MFA key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
}

pub struct MfaKey {
    cipher: Aes256Gcm,
    id: String,
}

/// Never the key.
impl std::fmt::Debug for MfaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MfaKey {
    /// From 64 hex characters.
    pub fn from_hex(hex_key: &str) -> Option<Self> {
        let bytes = hex::decode(hex_key.trim()).ok().filter(|b| b.len() == 32)?;
        let id = hex::encode(&Sha256::digest([b"portcullis.mfa.key-id:".as_slice(), &bytes].concat())[..8]);
        Some(Self { cipher: Aes256Gcm::new_from_slice(&bytes).ok()?, id })
    }

    /// A fingerprint naming the key (stored beside what it sealed), never the key.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(user_id: i64) -> String {
        format!("portcullis.mfa.totp:{user_id}")
    }

    /// The nonce followed by the ciphertext.
    pub fn seal(&self, user_id: i64, secret: &[u8]) -> Option<Vec<u8>> {
        let nonce = crypto::random_bytes::<NONCE_BYTES>();
        let aad = Self::aad(user_id);
        let sealed = self.cipher.encrypt(&Nonce::from(nonce), Payload { msg: secret, aad: aad.as_bytes() });
        Some([nonce.as_slice(), &sealed.ok()?].concat())
    }

    /// `None` when it was sealed under another key, for another user, or altered.
    pub fn open(&self, user_id: i64, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_BYTES)?;
        let nonce = Nonce::from(<[u8; NONCE_BYTES]>::try_from(nonce).ok()?);
        let aad = Self::aad(user_id);
        self.cipher.decrypt(&nonce, Payload { msg: ciphertext, aad: aad.as_bytes() }).ok()
    }
}

/// The configured key: `mfa.key`, else the key file if it exists (`None` if it does not).
pub fn load(settings: &config::Mfa) -> Result<Option<MfaKey>, KeyError> {
    if !settings.key.expose().is_empty() {
        // Checked by `config::Mfa::validate`.
        return Ok(MfaKey::from_hex(settings.key.expose()));
    }
    let path = &settings.key_file;
    match std::fs::read_to_string(path) {
        Ok(text) => MfaKey::from_hex(&text).map(Some).ok_or_else(|| KeyError::Malformed(path.clone())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Read { path: path.clone(), source }),
    }
}

/// Creates the key file with a new key (mode 0600) unless it exists. Written whole under a
/// temporary name and linked into place, so two processes starting together agree on one
/// key and neither can read a half-written file. Returns whether this call created it.
pub fn create_file(path: &Path) -> Result<bool, KeyError> {
    let fail = |source| KeyError::Create { path: path.display().to_string(), source };
    if path.exists() {
        return Ok(false);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    let written = file.write_all(format!("{}\n", crypto::random_hex(32)).as_bytes()).and_then(|()| file.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_user() {
        let key = MfaKey::from_hex(&"11".repeat(32)).unwrap();
        let other = MfaKey::from_hex(&"22".repeat(32)).unwrap();
        let sealed = key.seal(7, b"secret bytes").unwrap();
        assert_eq!(key.open(7, &sealed).as_deref(), Some(b"secret bytes".as_slice()));
        assert_eq!(key.open(8, &sealed), None, "another user's row");
        assert_eq!(other.open(7, &sealed), None, "another key");
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert_eq!(key.open(7, &altered), None);
        assert_eq!(key.open(7, b"short"), None);
        assert_ne!(key.seal(7, b"secret bytes"), Some(sealed), "a fresh nonce each time");
        assert_ne!(key.id(), other.id());
        assert!(!format!("{key:?}").contains("1111"));
        assert!(MfaKey::from_hex("abc").is_none());
    }

    #[test]
    fn the_key_file_is_created_once_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.key");
        assert!(create_file(&path).unwrap());
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(!create_file(&path).unwrap(), "an existing key is kept");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let settings = config::Mfa {
            key: config::Secret::new(""),
            key_file: path.display().to_string(),
            ..crate::config::Settings::defaults().unwrap().mfa
        };
        assert!(load(&settings).unwrap().is_some());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
