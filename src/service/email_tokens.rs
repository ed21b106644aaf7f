//! The secrets in recovery mails, stateless: nothing is stored that could reset a password
//! or verify an address, and nothing needs cleaning up.
//!
//! A password reset token is Django's `PasswordResetTokenGenerator` exactly (with a server
//! secret kept in the database for `SECRET_KEY`): `<timestamp base36>-<HMAC>` over the
//! user's id, password hash, last login, the timestamp and email. It stops working when any
//! of them changes: a new password (so once used), a login, a new address; and after
//! `email.password_reset_timeout`. A verification key is allauth's `EmailConfirmationHMAC`
//! idea: `<uid>.<timestamp base36>.<HMAC>` over the user's id, address and the timestamp;
//! "once used" is the `email_verified` flag it sets (a verified address's key answers 404).
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{crypto, store::user};

/// Django's key salt, so a token is the one Django would make with the same secret.
const RESET_SALT: &str = "django.contrib.auth.tokens.PasswordResetTokenGenerator";
const VERIFY_SALT: &str = "portcullis.service.email_tokens.EmailVerification";
/// Django refuses timestamps of more than 13 base-36 digits.
const MAX_TS_DIGITS: usize = 13;

pub struct EmailTokens {
    reset_key: [u8; 32],
    verify_key: [u8; 32],
    reset_timeout: i64,
    verify_timeout: i64,
}

/// A verification key taken apart; its MAC is checked against the user it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey {
    pub user_id: i64,
    timestamp: i64,
    mac: String,
}

impl EmailTokens {
    /// `secret` is the server's (shared by every instance); timeouts in seconds.
    pub fn new(secret: &str, reset_timeout: u64, verify_timeout: u64) -> Self {
        let key = |salt: &str| -> [u8; 32] { Sha256::digest(format!("{salt}{secret}").as_bytes()).into() };
        let seconds = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        Self {
            reset_key: key(RESET_SALT),
            verify_key: key(VERIFY_SALT),
            reset_timeout: seconds(reset_timeout),
            verify_timeout: seconds(verify_timeout),
        }
    }

    /// A password reset token for `user`, made at `now`.
    pub fn reset_token(&self, user: &user::Model, now: DateTime<Utc>) -> String {
        let ts = num_seconds(now);
        format!("{}-{}", to_base36(ts), self.reset_mac(user, ts))
    }

    /// Django's `check_token`: well-formed, the MAC of this user's current state, not expired.
    pub fn check_reset_token(&self, user: &user::Model, token: &str, now: DateTime<Utc>) -> bool {
        let Some((ts_b36, _)) = token.split_once('-') else { return false };
        let Some(ts) = from_base36(ts_b36) else { return false };
        let expected = format!("{}-{}", to_base36(ts), self.reset_mac(user, ts));
        crypto::constant_time_eq(expected.as_bytes(), token.as_bytes()) && num_seconds(now) - ts <= self.reset_timeout
    }

    /// Django's `_make_hash_value`, its last login without microseconds as Python prints it.
    fn reset_mac(&self, user: &user::Model, ts: i64) -> String {
        let login = user.last_login.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        let value = format!("{}{}{login}{ts}{}", user.id, user.password, user.email);
        half_hex(&self.reset_key, &value)
    }

    /// A key verifying `user`'s current address, made at `now`.
    pub fn verification_key(&self, user: &user::Model, now: DateTime<Utc>) -> String {
        let ts = num_seconds(now);
        format!("{}.{}.{}", encode_uid(user.id), to_base36(ts), self.verify_mac(user.id, &user.email, ts))
    }

    /// The parts of a key that looks like one, to find the user it names.
    pub fn parse_verification_key(key: &str) -> Option<VerificationKey> {
        let mut parts = key.split('.');
        let (uid, ts, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(VerificationKey { user_id: decode_uid(uid)?, timestamp: from_base36(ts)?, mac: mac.to_owned() })
    }

    /// Whether `key` was made for `user`'s current address and has not expired.
    pub fn check_verification_key(&self, user: &user::Model, key: &VerificationKey, now: DateTime<Utc>) -> bool {
        let expected = self.verify_mac(user.id, &user.email, key.timestamp);
        key.user_id == user.id
            && crypto::constant_time_eq(expected.as_bytes(), key.mac.as_bytes())
            && num_seconds(now) - key.timestamp <= self.verify_timeout
    }

    fn verify_mac(&self, id: i64, email: &str, ts: i64) -> String {
        half_hex(&self.verify_key, &format!("{id}|{email}|{ts}"))
    }
}

/// Django's `salted_hmac(...).hexdigest()[::2]`: every other hex digit (128 bits), for
/// shorter links.
fn half_hex(key: &[u8; 32], value: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes()).chars().step_by(2).collect()
}

/// Django's `urlsafe_base64_encode(force_bytes(pk))`: the id's decimal digits, base64 without padding.
pub fn encode_uid(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string())
}

/// The id in a uid, if it is one (padding tolerated, as Django's decoder adds it back).
pub fn decode_uid(uid: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(uid.trim_end_matches('=')).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Django's `_num_seconds`: seconds since 2001-01-01.
fn num_seconds(now: DateTime<Utc>) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(2001, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc());
    epoch.map_or(0, |epoch| (now - epoch).num_seconds())
}

fn to_base36(mut n: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n <= 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn from_base36(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > MAX_TS_DIGITS || !s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()) {
        return None;
    }
    i64::from_str_radix(s, 36).ok()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ann() -> user::Model {
        user::Model {
            id: 7,
            username: "ann".into(),
            username_key: "ann".into(),
            password: "argon2$x".into(),
            email: "ann@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
            is_active: true,
            is_staff: false,
            is_superuser: false,
            last_login: Some(Utc.with_ymd_and_hms(2026, 11, 30, 8, 15, 42).unwrap()),
            date_joined: Utc::now(),
            security_stamp: String::new(),
            email_verified: false,
        }
    }

    #[test]
    fn reset_tokens_are_djangos() {
        // Computed with Python's hashlib/hmac as Django's PasswordResetTokenGenerator does.
        let tokens = EmailTokens::new("s3cret", 259_200, 259_200);
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        assert_eq!(tokens.reset_token(&ann(), now), "diwpc0-eaed17d6143694a2570c9253de56f219");
        let never = user::Model { last_login: None, email: String::new(), ..ann() };
        assert_eq!(tokens.reset_token(&never, now), "diwpc0-6e62e75602ade3e5231041c0e0d69163");
        assert_eq!(encode_uid(7), "Nw");
        assert_eq!(encode_uid(1_234_567), "MTIzNDU2Nw");
        assert_eq!(decode_uid("MTIzNDU2Nw"), Some(1_234_567));
        assert_eq!(decode_uid("Nw=="), Some(7));
        for bad in ["", "!!", "LTE", "YQ"] {
            assert_eq!(decode_uid(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_reset_token_dies_with_the_password_a_login_the_address_and_time() {
        let tokens = EmailTokens::new("s3cret", 3600, 3600);
        let now = Utc::now();
        let token = tokens.reset_token(&ann(), now);
        assert!(tokens.check_reset_token(&ann(), &token, now));
        assert!(tokens.check_reset_token(&ann(), &token, now + chrono::Duration::seconds(3600)));
        assert!(!tokens.check_reset_token(&ann(), &token, now + chrono::Duration::seconds(3601)));
        let changed = [
            user::Model { password: "argon2$y".into(), ..ann() },
            user::Model { last_login: Some(now), ..ann() },
            user::Model { email: "ann@example.org".into(), ..ann() },
            user::Model { id: 8, ..ann() },
        ];
        for user in changed {
            assert!(!tokens.check_reset_token(&user, &token, now));
        }
        assert!(!EmailTokens::new("other", 3600, 3600).check_reset_token(&ann(), &token, now));
        for bad in
            ["", "-", "x", "zzzzzzzzzzzzzz-00", &format!("0{token}"), &token[..token.len() - 1], &format!("{token}0")]
        {
            assert!(!tokens.check_reset_token(&ann(), bad, now), "{bad}");
        }
    }

    #[test]
    fn verification_keys_name_the_user_and_die_with_the_address_and_time() {
        let tokens = EmailTokens::new("s3cret", 3600, 60);
        let now = Utc::now();
        let key = tokens.verification_key(&ann(), now);
        let parsed = EmailTokens::parse_verification_key(&key).unwrap();
        assert_eq!(parsed.user_id, 7);
        assert!(tokens.check_verification_key(&ann(), &parsed, now));
        assert!(!tokens.check_verification_key(&ann(), &parsed, now + chrono::Duration::seconds(61)));
        let moved = user::Model { email: "ann@example.org".into(), ..ann() };
        assert!(!tokens.check_verification_key(&moved, &parsed, now));
        for bad in ["", "Nw", "Nw.x", "Nw.x.y.z", "!.1.ab"] {
            let parsed = EmailTokens::parse_verification_key(bad);
            assert!(parsed.is_none_or(|p| !tokens.check_verification_key(&ann(), &p, now)), "{bad}");
        }
    }
}
