//! simplejwt's access/refresh pairs, with its claims, lifetimes, rotation and blacklist,
//! and what it lacks: refresh rotation is a compare-and-swap (of two concurrent refreshes
//! of one token exactly one wins), reusing a rotated-away token revokes its whole family,
//! tokens carry a digest of the user's security stamp (a password change or "log out
//! everywhere" revokes access and refresh tokens alike), and only `jti`s are stored.
//!
//! Every token names its key (`kid`); the keys rotate without logging anyone out.
//! [`keys`] holds a set of keys, [`keystore`] keeps them in the database, [`watch`] tells
//! running instances of a rotation; [`refresh`] keeps the refresh tokens' records.
mod keys;
mod keystore;
mod refresh;
pub mod watch;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use chrono::Utc;
use jsonwebtoken::{Header, errors::ErrorKind};
use sea_orm::{DatabaseConnection, DbErr};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use keys::KeyError;
use keys::KeySet;
pub use keystore::Rotated;
pub use refresh::{Refreshed, blacklist_user, flush_expired, spent};

use super::identity::Aal;
use crate::{config, crypto, store::user};

pub const ACCESS: &str = "access";
pub const REFRESH: &str = "refresh";

/// simplejwt's `TokenError` messages.
pub mod msg {
    pub const INVALID: &str = "Token is invalid";
    pub const EXPIRED: &str = "Token is expired";
    pub const WRONG_TYPE: &str = "Token has wrong type";
    pub const NO_ID: &str = "Token has no id";
    pub const NO_TYPE: &str = "Token has no type";
    pub const BLACKLISTED: &str = "Token is blacklisted";
}

/// The claims portcullis reads; anything else in a token is carried but ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub token_type: String,
    pub jti: String,
    pub user_id: Option<i64>,
    pub stamp: Option<String>,
    pub exp: i64,
    pub iat: Option<i64>,
    /// `aal` (1 when absent, as in tokens from before the second factor or from simplejwt)
    /// and `aal_at`, when the second factor was proven.
    pub aal: Aal,
}

/// Why a token was refused, as simplejwt words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Token(&'static str),
    /// The refresh token's user is gone or inactive.
    NoActiveAccount,
    /// The user's password (or security stamp) changed since the token was issued.
    PasswordChanged,
    /// A rotated-away refresh token was presented again; its whole family is now blacklisted.
    Reused {
        user_id: i64,
        family: String,
        revoked: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("token refused")]
    Refused(TokenError),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// Issuing a token failed: its record could not be written, or it could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error(transparent)]
    Signing(#[from] SigningError),
}

impl From<IssueError> for JwtError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Db(e) => Self::Db(e),
            IssueError::Signing(e) => Self::Signing(e),
        }
    }
}

impl From<IssueError> for super::ServiceError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Db(e) => Self::Db(e),
            IssueError::Signing(e) => Self::Signing(e),
        }
    }
}

/// jsonwebtoken could not sign (a key that does not fit the algorithm).
#[derive(Debug, thiserror::Error)]
#[error("JWT signing failed: {0}")]
pub struct SigningError(#[from] jsonwebtoken::errors::Error);

impl From<TokenError> for JwtError {
    fn from(e: TokenError) -> Self {
        Self::Refused(e)
    }
}

/// The keys (swapped whole by a rotation) and the lifetimes.
pub struct Jwt {
    keys: ArcSwap<KeySet>,
    /// Where the keys are read again after a rotation; `None` for keys from the configuration.
    db: Option<DatabaseConnection>,
    settings: config::Jwt,
    /// The last read of the keys caused by a token naming an unknown `kid` (at most one a second).
    last_miss: Mutex<Option<Instant>>,
    /// Whether a PostgreSQL NOTIFY channel tells us of rotations (no need to poll then).
    listening: AtomicBool,
}

/// A new pair from `POST /api/token/`.
pub struct Pair {
    pub refresh: String,
    pub access: String,
    pub refresh_jti: String,
}

/// Why `rotatekeys` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{0}")]
    Configured(String),
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl Jwt {
    /// Loads the keys: from the configuration, or from the database (made there at first
    /// start; `Some(Rotated)` when the signing key changed now: a first start, or a new
    /// `jwt.algorithm`).
    pub async fn load(settings: &config::Jwt, db: &DatabaseConnection) -> Result<(Self, Option<Rotated>), KeyError> {
        let (set, db, made) = if settings.configured_keys() {
            (KeySet::from_config(settings)?, None, None)
        } else {
            let made = keystore::prepare(db, settings).await?;
            if made.is_some() {
                watch::notify(db).await;
            }
            (KeySet::from_rows(&keystore::rows(db).await?, settings)?, Some(db.clone()), made)
        };
        let jwt = Self {
            keys: ArcSwap::from_pointee(set),
            db,
            settings: settings.clone(),
            last_miss: Mutex::new(None),
            listening: AtomicBool::new(false),
        };
        Ok((jwt, made))
    }

    /// Reads the keys from the database again if they changed; `true` when they did.
    pub async fn reload(&self) -> Result<bool, KeyError> {
        let Some(db) = &self.db else { return Ok(false) };
        let rows = keystore::rows(db).await?;
        if keys::fingerprint(&rows) == self.keys.load().fingerprint {
            return Ok(false);
        }
        self.keys.store(Arc::new(KeySet::from_rows(&rows, &self.settings)?));
        Ok(true)
    }

    /// `portcullis rotatekeys`: the key published as next signs from now on, here and
    /// (through NOTIFY or their poll) on every instance; a new next key is published; the old
    /// one verifies until its tokens have expired.
    pub async fn rotate(&self) -> Result<Rotated, RotateError> {
        let Some(db) = &self.db else {
            let key = if self.settings.algorithm == config::JwtAlgorithm::HS256 {
                "jwt.signing_key is set: portcullis does not replace a key from the configuration; \
                 change it there (tokens signed with the old one stop working), or empty it to let \
                 portcullis keep and rotate its own"
            } else {
                "jwt.private_key_file is set: replace the key files yourself and list the old public \
                 key in jwt.previous_public_key_files until its tokens have expired, or empty both \
                 to let portcullis keep and rotate its own key pair"
            };
            return Err(RotateError::Configured(key.into()));
        };
        let rotated = keystore::rotate(db, &self.settings).await?;
        watch::notify(db).await;
        self.reload().await?;
        Ok(rotated)
    }

    /// `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        self.keys.load().jwks(Utc::now())
    }

    fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
    }

    fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Whether a verified token's `exp` has passed since (jsonwebtoken's rule, with leeway).
    pub fn expired(&self, exp: i64) -> bool {
        exp < Utc::now().timestamp() - i64::try_from(self.settings.leeway).unwrap_or(0)
    }

    pub fn rotates(&self) -> bool {
        self.settings.rotate_refresh_tokens
    }

    fn encode(
        &self,
        token_type: &str,
        user: &user::Model,
        lifetime: u64,
        jti: &str,
        aal: Aal,
    ) -> Result<String, SigningError> {
        let now = Utc::now().timestamp();
        let mut claims = json!({
            "token_type": token_type,
            "exp": now + i64::try_from(lifetime).unwrap_or(i64::MAX / 2),
            "iat": now,
            "jti": jti,
            "user_id": user.id.to_string(),
            "stamp": stamp_claim(&user.security_stamp),
            "aal": aal.level(),
        });
        if let Some(at) = aal.at() {
            claims["aal_at"] = json!(at.timestamp());
        }
        if !self.settings.audience.is_empty() {
            claims["aud"] = json!(self.settings.audience);
        }
        if !self.settings.issuer.is_empty() {
            claims["iss"] = json!(self.settings.issuer);
        }
        let keys = self.keys.load();
        let signer = keys.signer();
        let mut header = Header::new(signer.algorithm);
        header.kid = Some(signer.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &signer.encoding)?)
    }

    /// An access token for `user`, obtained with a password alone.
    pub fn access_for(&self, user: &user::Model) -> Result<String, SigningError> {
        self.access_with(user, Aal::ONE)
    }

    /// An access token for `user` at assurance level `aal`.
    pub fn access_with(&self, user: &user::Model, aal: Aal) -> Result<String, SigningError> {
        self.encode(ACCESS, user, self.settings.access_token_lifetime, &new_jti(), aal)
    }

    /// Checks the key (`kid`), signature, algorithm, expiry, audience/issuer and, when
    /// given, the type. A `kid` this instance does not know makes it read the keys again
    /// first (another instance may have rotated a moment ago).
    pub async fn decode(&self, token: &str, expected: Option<&str>) -> Result<Claims, TokenError> {
        let claims = match self.checked_claims(token)? {
            Some(claims) => claims,
            None if self.reload_on_miss().await => {
                self.checked_claims(token)?.ok_or(TokenError::Token(msg::INVALID))?
            }
            None => return Err(TokenError::Token(msg::INVALID)),
        };
        claims_of(claims, expected)
    }

    /// The verified claims; `None` when the token names a key this set does not have.
    fn checked_claims(&self, token: &str) -> Result<Option<Map<String, Value>>, TokenError> {
        let invalid = TokenError::Token(msg::INVALID);
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid.clone())?;
        let keys = self.keys.load();
        let keys::Lookup::Found(verifier) = keys.verifier(header.kid.as_deref(), Utc::now()) else {
            return Ok(None);
        };
        verifier.decode(token).map(Some).map_err(|e| {
            TokenError::Token(if matches!(e.kind(), ErrorKind::ExpiredSignature) { msg::EXPIRED } else { msg::INVALID })
        })
    }

    /// Reads the keys again for a token naming an unknown `kid`, at most once a second
    /// (whatever the tokens sent, the database sees one cheap query a second at most).
    async fn reload_on_miss(&self) -> bool {
        if self.db.is_none() {
            return false;
        }
        {
            let Ok(mut last) = self.last_miss.lock() else { return false };
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match self.reload().await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the JWT signing keys");
                false
            }
        }
    }
}

/// The claims portcullis reads from a verified token.
fn claims_of(c: Map<String, Value>, expected: Option<&str>) -> Result<Claims, TokenError> {
    let token_type = c.get("token_type").and_then(Value::as_str).ok_or(TokenError::Token(msg::NO_TYPE))?.to_owned();
    if expected.is_some_and(|t| t != token_type) {
        return Err(TokenError::Token(msg::WRONG_TYPE));
    }
    let jti = c.get("jti").and_then(Value::as_str).ok_or(TokenError::Token(msg::NO_ID))?.to_owned();
    let user_id = match c.get("user_id") {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    };
    Ok(Claims {
        token_type,
        jti,
        user_id,
        stamp: c.get("stamp").and_then(Value::as_str).map(str::to_owned),
        exp: c.get("exp").and_then(Value::as_i64).unwrap_or_default(),
        iat: c.get("iat").and_then(Value::as_i64),
        aal: aal_claims(&c),
    })
}

/// The assurance level the claims carry (signed, so the client cannot raise it).
fn aal_claims(claims: &Map<String, Value>) -> Aal {
    let level = claims.get("aal").and_then(Value::as_i64).unwrap_or(1);
    let at = claims.get("aal_at").and_then(Value::as_i64).and_then(|t| chrono::DateTime::from_timestamp(t, 0));
    Aal::from_parts(i16::try_from(level).unwrap_or(1), at)
}

/// simplejwt's `jti`: 32 hex characters.
fn new_jti() -> String {
    crypto::random_hex(16)
}

/// What tokens carry of the user's security stamp: a digest, so the stamp itself never
/// leaves the server (token payloads are readable by anyone holding them).
pub fn stamp_claim(stamp: &str) -> String {
    let digest = Sha256::digest(format!("portcullis.jwt.stamp:{stamp}").as_bytes());
    hex::encode(&digest[..16])
}

/// Whether a token's stamp claim is the user's current stamp. A token without one was
/// issued by simplejwt before the move from Django: it is honoured while the user still has
/// the stamp `import-django` gave them under their Django id (a password change or "log out
/// everywhere" since replaces it, and ends those tokens as it ends ours).
pub fn stamp_matches(claim: Option<&str>, stamp: &str) -> bool {
    match claim {
        Some(c) => crypto::constant_time_eq(c.as_bytes(), stamp_claim(stamp).as_bytes()),
        None => stamp.starts_with(super::users::IMPORTED_STAMP_PREFIX),
    }
}
