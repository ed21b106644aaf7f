//! `[mfa]`: the second factor (TOTP), its login step and step-up for sensitive actions.
use serde::Deserialize;

use super::{ConfigError, Secret, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mfa {
    /// The `issuer` of otpauth:// URLs: the name authenticator apps show.
    pub issuer: String,
    /// Seconds an ephemeral token (a right password waiting for its code) lives.
    pub ephemeral_ttl: u64,
    /// Seconds after a second factor during which sensitive actions are allowed.
    pub step_up_age: u64,
    /// The key sealing TOTP secrets, 64 hex characters (`PORTCULLIS_MFA__KEY`); empty: `key_file`.
    pub key: Secret,
    /// Where the key is read from when `key` is empty (made at first start on SQLite).
    pub key_file: String,
}

impl Mfa {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() || self.issuer.contains(':') {
            return Err(invalid("mfa.issuer", "a name without a colon is needed (it labels otpauth:// URLs)"));
        }
        if self.ephemeral_ttl == 0 || self.step_up_age == 0 {
            return Err(invalid("mfa.ephemeral_ttl", "mfa.ephemeral_ttl and mfa.step_up_age must be above 0"));
        }
        let key = self.key.expose();
        let well_formed = key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit());
        if !key.is_empty() && !well_formed {
            return Err(invalid(
                "mfa.key",
                "64 hex characters (32 bytes) are needed, e.g. from `openssl rand -hex 32`",
            ));
        }
        if key.is_empty() && self.key_file.is_empty() {
            return Err(invalid("mfa.key_file", "a path is needed when mfa.key is empty"));
        }
        Ok(())
    }

    pub fn ephemeral_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.ephemeral_ttl).unwrap_or(i64::MAX / 1000))
    }

    pub fn step_up_age(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.step_up_age).unwrap_or(i64::MAX / 1000))
    }
}
