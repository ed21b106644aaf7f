//! The parts of `django.core.signing` and `django.contrib.auth` an import needs to trust a
//! session row: the signed session data, and the `_auth_user_hash` inside it.
//!
//! Django (3.1+) stores `signing.dumps(session_dict, salt="django.contrib.sessions.SessionStore",
//! compress=True)`: `[.]base64url(json or zlib(json)):timestamp:signature`, where the
//! signature is `base64url(HMAC-SHA256(key, "payload:timestamp"))` and the key is
//! `SHA-256(salt + "signer" + SECRET_KEY)` (`salted_hmac`).
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::crypto;

const SESSION_SALT: &str = "django.contrib.sessions.SessionStore";
const AUTH_HASH_SALT: &str = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash";

/// Django's `salted_hmac(key_salt, value, secret, algorithm="sha256")`. (`None` cannot
/// happen: HMAC takes keys of any length.)
fn salted_hmac(key_salt: &str, value: &str, secret: &str) -> Option<[u8; 32]> {
    let key = Sha256::digest(format!("{key_salt}{secret}").as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(value.as_bytes());
    Some(mac.finalize().into_bytes().into())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("session data signature does not match the given SECRET_KEY")]
    BadSignature,
    #[error("session data in a format older than Django 3.1 (not supported)")]
    Legacy,
    #[error("session data is not readable JSON: {0}")]
    Payload(String),
}

/// Verifies and decodes a `django_session.session_data` value with any of `secrets`
/// (SECRET_KEY, then SECRET_KEY_FALLBACKS).
pub fn load_session(session_data: &str, secrets: &[String]) -> Result<Map<String, Value>, SigningError> {
    let Some((value, signature)) = session_data.rsplit_once(':') else {
        return Err(SigningError::Legacy);
    };
    if !value.contains(':') {
        return Err(SigningError::Legacy);
    }
    let salt = format!("{SESSION_SALT}signer");
    let given = URL_SAFE_NO_PAD.decode(signature).map_err(|_| SigningError::BadSignature)?;
    let verifies =
        |secret: &String| salted_hmac(&salt, value, secret).is_some_and(|mac| crypto::constant_time_eq(&mac, &given));
    if !secrets.iter().any(verifies) {
        return Err(SigningError::BadSignature);
    }
    let Some((payload, _timestamp)) = value.rsplit_once(':') else { return Err(SigningError::Legacy) };
    let (compressed, payload) = match payload.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, payload),
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|e| SigningError::Payload(e.to_string()))?;
    if compressed {
        bytes = inflate(&bytes).map_err(|e| SigningError::Payload(format!("zlib: {e}")))?;
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(SigningError::Payload("not an object".into())),
        Err(e) => Err(SigningError::Payload(e.to_string())),
    }
}

/// At most this much decompressed session data (Django's sessions are small; a bomb is not).
const MAX_SESSION_BYTES: u64 = 1 << 20;

fn inflate(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes).take(MAX_SESSION_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_SESSION_BYTES {
        return Err(std::io::Error::other("more than 1 MiB"));
    }
    Ok(out)
}

/// Whether `_auth_user_hash` is the one Django computes for this password hash
/// (`AbstractBaseUser.get_session_auth_hash`): a session whose user changed their password
/// since is logged out in Django, and is not imported.
pub fn auth_hash_matches(session_hash: &str, password_hash: &str, secrets: &[String]) -> bool {
    secrets.iter().any(|secret| {
        salted_hmac(AUTH_HASH_SALT, password_hash, secret)
            .is_some_and(|mac| crypto::constant_time_eq(hex::encode(mac).as_bytes(), session_hash.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signs as `signing.dumps` does (the round trip against real Django is the CI test
    /// in tests/django; `golden_*` below are values Django produced).
    fn sign(payload: &str, secret: &str, compress: bool) -> String {
        let body = if compress {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(payload.as_bytes()).unwrap();
            format!(".{}", URL_SAFE_NO_PAD.encode(e.finish().unwrap()))
        } else {
            URL_SAFE_NO_PAD.encode(payload)
        };
        let value = format!("{body}:1tWQXy");
        let sig = URL_SAFE_NO_PAD.encode(salted_hmac(&format!("{SESSION_SALT}signer"), &value, secret).unwrap());
        format!("{value}:{sig}")
    }

    #[test]
    fn signed_session_data_round_trips_and_tampering_is_refused() {
        let secrets = vec!["test-secret".to_owned()];
        for compress in [false, true] {
            let data = sign(r#"{"_auth_user_id":"7","theme":"dark"}"#, "test-secret", compress);
            let map = load_session(&data, &secrets).unwrap();
            assert_eq!(map["_auth_user_id"], "7");
            assert_eq!(load_session(&data, &["other".to_owned()]), Err(SigningError::BadSignature));
            let tampered = data.replacen(':', "x:", 1);
            assert_eq!(load_session(&tampered, &secrets), Err(SigningError::BadSignature));
        }
        // A fallback key verifies as Django's SECRET_KEY_FALLBACKS does.
        let data = sign("{}", "old", false);
        assert!(load_session(&data, &["new".to_owned(), "old".to_owned()]).is_ok());
        assert_eq!(load_session("bm90IHNpZ25lZA==", &secrets), Err(SigningError::Legacy));
    }

    /// Made by Django 5.2.19: `SessionStore().encode({...})` under SECRET_KEY
    /// "django-insecure-portcullis-test", for a user whose hash is `GOLDEN_PASSWORD`.
    const GOLDEN_SESSION: &str = ".eJxVjDsOwjAQBe_iOrL8ib0kJT0nQMha79okgGwpnwpxdxIpBbRv5s1bBFyXIaxzmsLIohdaNL9bRHqmsgN-YLlXSbUs0xjlrsiDzvJSOb3Oh_sXGHAetncLbAk6nblT1lM8Ge9UR-iNMhqRIgMnmx0bbwFSdMSgAB3mVnHO7RYlnBbRX3Vjbp8v1xQ7-A:1xUy3A:V0y7JPNFL-MScSDbBnd5rAKeLde6YmA0JSnJO6Lgxf8";
    const GOLDEN_PASSWORD: &str =
        "pbkdf2_sha256$1000$TzixmBWPqsHdrNOmrlFVH2$uD+YX0sfTIFBf7OKNmazQvRQK55YnbAAeBKS+ZabzUs=";

    #[test]
    fn a_session_django_signed_verifies_with_its_secret_key_only() {
        let secrets = vec!["django-insecure-portcullis-test".to_owned()];
        let map = load_session(GOLDEN_SESSION, &secrets).unwrap();
        assert_eq!(map["_auth_user_id"], "1");
        assert_eq!(map["cart"], serde_json::json!([1, 2]));
        let hash = map["_auth_user_hash"].as_str().unwrap();
        assert_eq!(hash, "47d3c791fd9036cb826509ca62021aacbd7de3f5d26377eb5cd707a5af40dff4");
        assert!(auth_hash_matches(hash, GOLDEN_PASSWORD, &secrets));
        assert!(!auth_hash_matches(hash, GOLDEN_PASSWORD, &["another-key".to_owned()]));
        assert_eq!(load_session(GOLDEN_SESSION, &["another-key".to_owned()]), Err(SigningError::BadSignature));
    }

    #[test]
    fn the_session_auth_hash_is_djangos() {
        let secrets = vec!["s3cret".to_owned()];
        let hash = hex::encode(salted_hmac(AUTH_HASH_SALT, "pbkdf2_sha256$1$salt$hash", "s3cret").unwrap());
        assert!(auth_hash_matches(&hash, "pbkdf2_sha256$1$salt$hash", &secrets));
        assert!(!auth_hash_matches(&hash, "pbkdf2_sha256$1$salt$other", &secrets));
    }
}
