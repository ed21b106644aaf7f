//! `[jwt]`: simplejwt's settings, and where the signing keys come from.
use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, JwtAlgorithm, Secret, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    pub algorithm: JwtAlgorithm,
    pub signing_key: Secret,
    pub private_key_file: String,
    pub public_key_file: String,
    pub previous_public_key_files: Vec<String>,
    pub access_token_lifetime: u64,
    pub refresh_token_lifetime: u64,
    pub rotate_refresh_tokens: bool,
    pub blacklist_after_rotation: bool,
    pub leeway: u64,
    pub audience: String,
    pub issuer: String,
    pub auth_header_types: Vec<String>,
    pub jwks_max_age: u64,
    pub keys_poll_interval: u64,
}

impl Jwt {
    /// What types alone cannot check: the key files and the lifetimes.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let jwt = self;
        if jwt.algorithm != JwtAlgorithm::HS256 {
            let files =
                [("jwt.private_key_file", &jwt.private_key_file), ("jwt.public_key_file", &jwt.public_key_file)];
            // Neither: a key pair kept in the database. Both: the operator's own keys.
            if files.iter().any(|(_, f)| !f.is_empty()) {
                for (key, file) in files {
                    if file.is_empty() || !Path::new(file).is_file() {
                        return Err(invalid(
                            key,
                            format!("{:?} needs a readable PEM file, got {file:?}", jwt.algorithm),
                        ));
                    }
                }
            }
        }
        for file in &jwt.previous_public_key_files {
            if jwt.algorithm == JwtAlgorithm::HS256 || jwt.private_key_file.is_empty() || !Path::new(file).is_file() {
                return Err(invalid(
                    "jwt.previous_public_key_files",
                    format!("{file:?}: old public keys go with jwt.private_key_file and must be readable PEM files"),
                ));
            }
        }
        if jwt.access_token_lifetime == 0 || jwt.refresh_token_lifetime == 0 {
            return Err(invalid("jwt.access_token_lifetime", "lifetimes must be above 0"));
        }
        if jwt.auth_header_types.is_empty() || jwt.auth_header_types.iter().any(|t| t.is_empty() || t.contains(' ')) {
            return Err(invalid("jwt.auth_header_types", "one or more single words are needed"));
        }
        Ok(())
    }

    /// Whether the keys come from the configuration (`signing_key`, PEM files) rather than
    /// the database; configured keys are not rotated by `portcullis rotatekeys`.
    pub fn configured_keys(&self) -> bool {
        match self.algorithm {
            JwtAlgorithm::HS256 => !self.signing_key.expose().is_empty(),
            _ => !self.private_key_file.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{JwtAlgorithm, Settings};

    #[test]
    fn key_pairs_come_from_both_files_or_from_the_database_never_half() {
        let mut settings = Settings::defaults().unwrap();
        settings.jwt.algorithm = JwtAlgorithm::ES256;
        settings.validate().unwrap();
        assert!(!settings.jwt.configured_keys(), "no files: a key pair kept in the database");
        settings.jwt.private_key_file = "/nonexistent/ec.pem".into();
        assert!(settings.validate().unwrap_err().to_string().contains("jwt.private_key_file"));
        settings.jwt.private_key_file = String::new();
        settings.jwt.previous_public_key_files = vec!["/etc/hostname".into()];
        assert!(settings.validate().unwrap_err().to_string().contains("jwt.previous_public_key_files"));
    }
}
