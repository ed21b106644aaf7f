//! The keys: the one that signs, the ones that verify (by `kid`), and the public ones a
//! JWKS publishes. A [`KeySet`] never changes; a rotation builds a new one and `Jwt` swaps
//! it in. Keys come from the configuration (an HS256 secret, PEM files) or from the
//! database ([`super::keystore`]).
//!
//! A token is verified only with the key its `kid` names and only with that key's
//! algorithm, so the header cannot choose how it is checked (`alg: none`, RS256 → HS256 with
//! the public key as secret). A token without `kid` (issued before kids, or by simplejwt
//! with the same secret) is checked against the current signing key only.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Validation,
    errors::ErrorKind,
    jwk::{Jwk, PublicKeyUse, ThumbprintHash},
};
use sea_orm::DbErr;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    config::{self, JwtAlgorithm},
    store::jwt::signing_key,
};

/// Why the signing keys could not be loaded, made or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot load the JWT signing keys: {0}")]
    Db(#[from] DbErr),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid PEM key for {algorithm:?} in {path}: {source}")]
    Pem { algorithm: Algorithm, path: String, source: jsonwebtoken::errors::Error },
    #[error("jwt.public_key_file {public} is not the public half of jwt.private_key_file {private}")]
    Mismatch { private: String, public: String },
    #[error("JWT signing key {kid} in the database is unusable: {why}")]
    Stored { kid: String, why: String },
    #[error("cannot generate a {algorithm:?} key: {why}")]
    Generate { algorithm: Algorithm, why: String },
}

pub fn algorithm(configured: JwtAlgorithm) -> Algorithm {
    match configured {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// The four algorithms portcullis signs with, by their JOSE names; nothing else is accepted.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        .into_iter()
        .find(|a| format!("{a:?}") == name)
}

/// The `kid` of an HS256 secret: derived from it (so every instance configured with the same
/// secret agrees) and revealing nothing a token signed with it does not.
pub fn hs_kid(secret: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"portcullis.jwt.kid:");
    hasher.update(secret);
    format!("hs256-{}", hex::encode(&hasher.finalize()[..12]))
}

/// A key pair's private half, from PKCS#8 PEM (PKCS#1 also for RSA).
pub fn encoding_from_pem(algorithm: Algorithm, pem: &[u8]) -> jsonwebtoken::errors::Result<EncodingKey> {
    match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// The public JWK of a private key, and its RFC 7638 thumbprint (its `kid`).
pub fn public_jwk(encoding: &EncodingKey, algorithm: Algorithm) -> jsonwebtoken::errors::Result<(Jwk, String)> {
    let mut jwk = Jwk::from_encoding_key(encoding, algorithm)?;
    jwk.common = Default::default();
    let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
    Ok((jwk, kid))
}

/// What a JWKS says of a key: its parameters with `kid`, `alg` and `use: "sig"`.
fn published(mut jwk: Jwk, kid: &str, algorithm: Algorithm) -> Jwk {
    jwk.common.key_id = Some(kid.to_owned());
    jwk.common.key_algorithm = Some(algorithm.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

/// The key that signs new tokens.
pub struct Signer {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
}

/// A key that verifies: its algorithm is the only one its tokens may name.
pub struct Verifier {
    pub kid: String,
    decoding: DecodingKey,
    validation: Validation,
    /// After this, tokens it signed are refused and it leaves the JWKS.
    not_after: Option<DateTime<Utc>>,
    /// Key pairs only: what the JWKS publishes.
    jwk: Option<Jwk>,
}

impl Verifier {
    fn new(kid: String, algorithm: Algorithm, decoding: DecodingKey, jwk: Option<Jwk>, settings: &config::Jwt) -> Self {
        let jwk = jwk.map(|j| published(j, &kid, algorithm));
        Self { kid, decoding, validation: validation(algorithm, settings), not_after: None, jwk }
    }

    fn live(&self, now: DateTime<Utc>) -> bool {
        self.not_after.is_none_or(|t| now <= t)
    }

    /// Signature, algorithm, expiry, audience and issuer.
    pub fn decode(&self, token: &str) -> jsonwebtoken::errors::Result<Map<String, Value>> {
        Ok(jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation)?.claims)
    }
}

/// The checks every token gets besides its signature.
fn validation(algorithm: Algorithm, settings: &config::Jwt) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = settings.leeway;
    validation.validate_aud = !settings.audience.is_empty();
    if !settings.audience.is_empty() {
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "aud"]);
    }
    if !settings.issuer.is_empty() {
        validation.set_issuer(&[&settings.issuer]);
    }
    validation
}

/// What the database held when a set was read: ids, and whether each was activated and
/// retired. A rotation or a deletion changes it; `Jwt` reloads only then.
pub type Fingerprint = Vec<(i64, bool, bool)>;

pub fn fingerprint(rows: &[signing_key::Model]) -> Fingerprint {
    rows.iter().map(|r| (r.id, r.activated_at.is_some(), r.retired_at.is_some())).collect()
}

/// The signing key and every key that still verifies.
pub struct KeySet {
    signer: Signer,
    /// The current key first, then the next one, then retired ones newest first (the JWKS's order).
    verifiers: Vec<Verifier>,
    by_kid: HashMap<String, usize>,
    pub fingerprint: Fingerprint,
}

/// How a token's `kid` resolved.
pub enum Lookup<'a> {
    Found(&'a Verifier),
    /// Not a key of this set (perhaps one another process made since it was read).
    Unknown,
}

impl KeySet {
    fn new(signer: Signer, verifiers: Vec<Verifier>, fingerprint: Fingerprint) -> Self {
        let by_kid = verifiers.iter().enumerate().map(|(i, v)| (v.kid.clone(), i)).collect();
        Self { signer, verifiers, by_kid, fingerprint }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The key a token's header names (none: the current key), if it still verifies.
    pub fn verifier(&self, kid: Option<&str>, now: DateTime<Utc>) -> Lookup<'_> {
        let kid = kid.unwrap_or(&self.signer.kid);
        match self.by_kid.get(kid).map(|&i| &self.verifiers[i]) {
            Some(v) if v.live(now) => Lookup::Found(v),
            _ => Lookup::Unknown,
        }
    }

    /// RFC 7517: the public keys that verify tokens now; `{"keys": []}` for HS256.
    pub fn jwks(&self, now: DateTime<Utc>) -> Value {
        let keys: Vec<Value> = self
            .verifiers
            .iter()
            .filter(|v| v.live(now))
            .filter_map(|v| v.jwk.as_ref())
            .filter_map(|jwk| serde_json::to_value(jwk).ok())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Keys from the configuration: `jwt.signing_key`, or the PEM files.
    pub fn from_config(settings: &config::Jwt) -> Result<Self, KeyError> {
        let algorithm = algorithm(settings.algorithm);
        if algorithm == Algorithm::HS256 {
            let secret = settings.signing_key.expose().as_bytes();
            let kid = hs_kid(secret);
            let verifier = Verifier::new(kid.clone(), algorithm, DecodingKey::from_secret(secret), None, settings);
            let signer = Signer { kid, algorithm, encoding: EncodingKey::from_secret(secret) };
            return Ok(Self::new(signer, vec![verifier], Vec::new()));
        }
        let (signer, jwk) = file_signer(algorithm, settings)?;
        let mut verifiers = vec![Verifier::new(signer.kid.clone(), algorithm, decoding(&jwk)?, Some(jwk), settings)];
        for path in &settings.previous_public_key_files {
            let jwk = public_file(algorithm, path)?;
            let kid = jwk.thumbprint(ThumbprintHash::SHA256).map_err(pem_error(algorithm, path))?;
            verifiers.push(Verifier::new(kid, algorithm, decoding(&jwk)?, Some(jwk), settings));
        }
        Ok(Self::new(signer, verifiers, Vec::new()))
    }

    /// Keys from the database: the current row signs; it, the next one and the retired
    /// ones verify, each until its `not_after`.
    pub fn from_rows(rows: &[signing_key::Model], settings: &config::Jwt) -> Result<Self, KeyError> {
        let current = super::keystore::current(rows)
            .ok_or_else(|| KeyError::Stored { kid: "-".into(), why: "no current key".into() })?;
        let signer = stored_signer(current)?;
        let mut others: Vec<&signing_key::Model> = rows.iter().filter(|r| r.id != current.id).collect();
        others.sort_by_key(|r| (r.retired_at.is_some(), std::cmp::Reverse(r.id)));
        let mut verifiers = Vec::with_capacity(rows.len());
        for row in std::iter::once(current).chain(others) {
            let mut verifier = stored_verifier(row, settings)?;
            verifier.not_after = row.not_after;
            verifiers.push(verifier);
        }
        Ok(Self::new(signer, verifiers, fingerprint(rows)))
    }
}

fn pem_error(algorithm: Algorithm, path: &str) -> impl Fn(jsonwebtoken::errors::Error) -> KeyError + '_ {
    move |source| KeyError::Pem { algorithm, path: path.to_owned(), source }
}

fn read(path: &str) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })
}

fn decoding(jwk: &Jwk) -> Result<DecodingKey, KeyError> {
    DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Stored { kid: "-".into(), why: e.to_string() })
}

/// The private key file, checked against the public key file (a mismatched pair would sign
/// tokens nobody can verify).
fn file_signer(algorithm: Algorithm, settings: &config::Jwt) -> Result<(Signer, Jwk), KeyError> {
    let path = &settings.private_key_file;
    let encoding = encoding_from_pem(algorithm, &read(path)?).map_err(pem_error(algorithm, path))?;
    let (jwk, kid) = public_jwk(&encoding, algorithm).map_err(pem_error(algorithm, path))?;
    if public_file(algorithm, &settings.public_key_file)?.algorithm != jwk.algorithm {
        return Err(KeyError::Mismatch { private: path.clone(), public: settings.public_key_file.clone() });
    }
    Ok((Signer { kid, algorithm, encoding }, jwk))
}

/// A public key file as a JWK (its parameters only).
fn public_file(algorithm: Algorithm, path: &str) -> Result<Jwk, KeyError> {
    let pem = read(path)?;
    let key = match algorithm {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
        _ => DecodingKey::from_ed_pem(&pem),
    }
    .map_err(pem_error(algorithm, path))?;
    let mut jwk = Jwk::from_decoding_key(&key, Some(algorithm)).map_err(pem_error(algorithm, path))?;
    jwk.common = Default::default();
    Ok(jwk)
}

fn stored_error(row: &signing_key::Model, why: impl std::fmt::Display) -> KeyError {
    KeyError::Stored { kid: row.kid.clone(), why: why.to_string() }
}

fn stored_algorithm(row: &signing_key::Model) -> Result<Algorithm, KeyError> {
    parse_algorithm(&row.algorithm).ok_or_else(|| stored_error(row, format!("unknown algorithm {:?}", row.algorithm)))
}

fn stored_signer(row: &signing_key::Model) -> Result<Signer, KeyError> {
    let algorithm = stored_algorithm(row)?;
    let private = row.private_key.as_deref().ok_or_else(|| stored_error(row, "no private key"))?;
    let encoding = match algorithm {
        Algorithm::HS256 => EncodingKey::from_secret(private.as_bytes()),
        _ => encoding_from_pem(algorithm, private.as_bytes()).map_err(|e| stored_error(row, e))?,
    };
    Ok(Signer { kid: row.kid.clone(), algorithm, encoding })
}

fn stored_verifier(row: &signing_key::Model, settings: &config::Jwt) -> Result<Verifier, KeyError> {
    let algorithm = stored_algorithm(row)?;
    if algorithm == Algorithm::HS256 {
        let secret = row.private_key.as_deref().ok_or_else(|| stored_error(row, "no secret"))?;
        return Ok(Verifier::new(
            row.kid.clone(),
            algorithm,
            DecodingKey::from_secret(secret.as_bytes()),
            None,
            settings,
        ));
    }
    let jwk: Jwk = serde_json::from_str(row.public_jwk.as_deref().unwrap_or_default())
        .map_err(|e| stored_error(row, format!("public JWK: {e}")))?;
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| stored_error(row, e))?;
    Ok(Verifier::new(row.kid.clone(), algorithm, decoding, Some(jwk), settings))
}
