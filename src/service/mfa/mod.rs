//! The second factor's pieces, framework-free: RFC 6238 codes (through `totp-rs`: SHA-1,
//! 6 digits, 30-second steps, one step of skew either way), the enrolment's otpauth:// URL
//! and QR code, recovery codes, the key sealing secrets at rest ([`key`]) and the rows
//! ([`records`]). The use cases that put them together are in `accounts::mfa`.
pub mod key;
pub mod records;

use qrcode::{QrCode, render::svg};
use totp_rs::{Algorithm, Totp};

use crate::crypto;

/// RFC 6238's recommended parameters, which every authenticator app understands.
const DIGITS: u8 = 6;
const STEP: u64 = 30;
const SKEW: u16 = 1;
/// 160-bit secrets (RFC 4226 §4 recommends them; 128 is the least allowed).
const SECRET_BYTES: usize = 20;

/// How many recovery codes a user holds, each used once.
pub const RECOVERY_CODES: usize = 10;
/// Crockford's base32: no I, L, O or U to misread; 12 of them are 60 bits.
const RECOVERY_ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
const RECOVERY_LEN: usize = 12;

/// A new TOTP secret from the OS CSPRNG.
pub fn new_secret() -> Vec<u8> {
    crypto::random_bytes::<SECRET_BYTES>().to_vec()
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, totp_rs::TotpError> {
    totp_rs::Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP)
        .with_skew(SKEW)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
}

/// The time step a 6-digit `code` belongs to, if it is right for `secret` at `unix_time`
/// (the current step or one either side). The caller refuses steps already used.
pub fn check(secret: &[u8], code: &str, unix_time: u64) -> Option<u64> {
    // The account name plays no part in codes; a valid placeholder keeps the builder happy.
    let totp = totp(secret, "portcullis", "user").ok()?;
    totp.check(code, unix_time)
}

/// What an authenticator app is given at enrolment.
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// The secret in base32 without padding, for typing in by hand.
    pub secret: String,
    pub otpauth_url: String,
    /// The URL as a QR code, an SVG document (no XML declaration, so it can be inlined).
    pub qr_svg: String,
}

/// The otpauth:// URL (Google Authenticator's key URI format) and its QR code.
pub fn provisioning(secret: &[u8], issuer: &str, username: &str) -> Result<Provisioning, String> {
    // Usernames cannot hold a colon (Django's validator); an imported one could: the label
    // is for display only, so it is replaced there rather than refused.
    let account = username.replace(':', "_");
    let totp = totp(secret, issuer, &account).map_err(|e| e.to_string())?;
    let otpauth_url = totp.to_url().map_err(|e| e.to_string())?;
    let qr = QrCode::new(otpauth_url.as_bytes()).map_err(|e| e.to_string())?;
    let svg = qr.render::<svg::Color<'_>>().min_dimensions(200, 200).build();
    let qr_svg = match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    };
    Ok(Provisioning { secret: totp.secret().to_base32(), otpauth_url, qr_svg })
}

/// A code as typed: a 6-digit TOTP code or a recovery code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Totp(String),
    /// Normalised: lowercase, separators dropped, Crockford's look-alikes mapped.
    Recovery(String),
}

impl Code {
    /// `None` for anything that cannot be either kind (too long, wrong characters).
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        if raw.len() == usize::from(DIGITS) && raw.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Self::Totp(raw.to_owned()));
        }
        if raw.len() > 2 * RECOVERY_LEN {
            return None;
        }
        let normalised: String = raw
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                c => c,
            })
            .collect();
        let valid = normalised.len() == RECOVERY_LEN && normalised.bytes().all(|b| RECOVERY_ALPHABET.contains(&b));
        valid.then_some(Self::Recovery(normalised))
    }

    /// For the audit trail and metrics.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Totp(_) => "totp",
            Self::Recovery(_) => "recovery_code",
        }
    }
}

/// A new set of recovery codes, formatted `xxxx-xxxx-xxxx` for reading out.
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let raw = crypto::random_string(RECOVERY_LEN, RECOVERY_ALPHABET);
            format!("{}-{}-{}", &raw[..4], &raw[4..8], &raw[8..])
        })
        .collect()
}

/// What is stored of a recovery code: a digest bound to its user, so one table-wide guess
/// cannot be tried against every user's codes at once.
pub fn recovery_digest(user_id: i64, normalised: &str) -> [u8; 32] {
    crypto::digest(&format!("portcullis.mfa.recovery:{user_id}:{normalised}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_rfc_6238_and_accept_one_step_of_skew() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890": at T=59 the 8-digit
        // code is 94287082, so the 6-digit one is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(check(secret, "287082", 59), Some(1));
        assert_eq!(check(secret, "287082", 59 + 30), Some(1), "one step late");
        assert_eq!(check(secret, "287082", 59 + 60), None, "two steps late");
        assert_eq!(check(secret, "287083", 59), None);
        assert_eq!(check(secret, "28708", 59), None);
    }

    #[test]
    fn codes_are_parsed_by_shape() {
        assert_eq!(Code::parse(" 123456 "), Some(Code::Totp("123456".into())));
        assert_eq!(Code::parse("1234567"), None, "too long for TOTP, too short for recovery");
        assert_eq!(Code::parse("12345a"), None);
        assert_eq!(Code::parse("ABCD-EFGH-JKMN"), Some(Code::Recovery("abcdefghjkmn".into())));
        assert_eq!(Code::parse("abcd efgh jkoL"), Some(Code::Recovery("abcdefghjk01".into())));
        assert_eq!(Code::parse("abcd-efgh-jkmu"), None, "u is not in the alphabet");
        assert_eq!(Code::parse(&"a".repeat(100)), None);
        for code in new_recovery_codes() {
            assert!(matches!(Code::parse(&code), Some(Code::Recovery(_))), "{code}");
        }
        assert_eq!(new_recovery_codes().len(), RECOVERY_CODES);
    }

    #[test]
    fn provisioning_gives_a_url_and_an_inline_svg() {
        let p = provisioning(b"12345678901234567890", "portcullis", "ann").unwrap();
        assert_eq!(p.secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            p.otpauth_url,
            "otpauth://totp/portcullis:ann?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=portcullis"
        );
        assert!(p.qr_svg.starts_with("<svg") && p.qr_svg.ends_with("</svg>"));
        assert!(provisioning(b"12345678901234567890", "portcullis", "a:b").is_ok());
    }
}
