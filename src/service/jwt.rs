//! simplejwt's access/refresh pairs, with its claims, lifetimes, rotation and blacklist,
//! and what it lacks: refresh rotation is a compare-and-swap (of two concurrent refreshes
//! of one token exactly one wins), reusing a rotated-away token revokes its whole family,
//! tokens carry a digest of the user's security stamp (a password change or "log out
//! everywhere" revokes access and refresh tokens alike), and only `jti`s are stored.
use chrono::{TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, OnConflict},
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::{
    config::{self, JwtAlgorithm},
    crypto,
    store::{
        jwt::{blacklisted, outstanding, secret},
        user,
    },
};

pub const ACCESS: &str = "access";
pub const REFRESH: &str = "refresh";
const HS_KEY_NAME: &str = "jwt_hs256_key";

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

/// What a refresh produced.
pub struct Refreshed {
    pub access: String,
    /// With rotation: the new refresh token.
    pub refresh: Option<String>,
    pub user: user::Model,
    /// With rotation: the `jti` of the new refresh token.
    pub rotated_to: Option<String>,
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

/// Why the signing keys could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot load the generated JWT key: {0}")]
    Db(#[from] DbErr),
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid PEM key for {algorithm:?}: {source}")]
    Pem { algorithm: Algorithm, source: jsonwebtoken::errors::Error },
}

impl From<TokenError> for JwtError {
    fn from(e: TokenError) -> Self {
        Self::Refused(e)
    }
}

/// The pinned algorithm, its keys and the lifetimes.
pub struct Jwt {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    settings: config::Jwt,
}

/// A new pair from `POST /api/token/`.
pub struct Pair {
    pub refresh: String,
    pub access: String,
    pub refresh_jti: String,
}

impl Jwt {
    /// Loads the keys: an HS256 secret from config, or generated once with the OS CSPRNG
    /// and kept in the database (shared by every instance, never logged); PEM files for
    /// RS256, ES256 and EdDSA.
    pub async fn load(settings: &config::Jwt, db: &impl ConnectionTrait) -> Result<Self, KeyError> {
        let algorithm = match settings.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        };
        let (encoding, decoding) = match algorithm {
            Algorithm::HS256 => {
                let secret = match settings.signing_key.expose() {
                    "" => shared_hs_key(db).await?,
                    key => key.to_owned(),
                };
                (EncodingKey::from_secret(secret.as_bytes()), DecodingKey::from_secret(secret.as_bytes()))
            }
            _ => pem_keys(algorithm, settings)?,
        };
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
        Ok(Self { algorithm, encoding, decoding, validation, settings: settings.clone() })
    }

    /// Whether a verified token's `exp` has passed since (jsonwebtoken's rule, with leeway).
    pub fn expired(&self, exp: i64) -> bool {
        exp < Utc::now().timestamp() - i64::try_from(self.settings.leeway).unwrap_or(0)
    }

    pub fn rotates(&self) -> bool {
        self.settings.rotate_refresh_tokens
    }

    fn encode(&self, token_type: &str, user: &user::Model, lifetime: u64, jti: &str) -> Result<String, SigningError> {
        let now = Utc::now().timestamp();
        let mut claims = json!({
            "token_type": token_type,
            "exp": now + i64::try_from(lifetime).unwrap_or(i64::MAX / 2),
            "iat": now,
            "jti": jti,
            "user_id": user.id.to_string(),
            "stamp": stamp_claim(&user.security_stamp),
        });
        if !self.settings.audience.is_empty() {
            claims["aud"] = json!(self.settings.audience);
        }
        if !self.settings.issuer.is_empty() {
            claims["iss"] = json!(self.settings.issuer);
        }
        Ok(jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)?)
    }

    /// An access token for `user`.
    pub fn access_for(&self, user: &user::Model) -> Result<String, SigningError> {
        self.encode(ACCESS, user, self.settings.access_token_lifetime, &new_jti())
    }

    /// Checks signature, algorithm, expiry, audience/issuer and, when given, the type.
    pub fn decode(&self, token: &str, expected: Option<&str>) -> Result<Claims, TokenError> {
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &self.validation).map_err(|e| {
                TokenError::Token(if matches!(e.kind(), ErrorKind::ExpiredSignature) {
                    msg::EXPIRED
                } else {
                    msg::INVALID
                })
            })?;
        let c = data.claims;
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
        })
    }

    /// `POST /api/token/`: a refresh token in a new family, and an access token.
    pub async fn obtain(&self, db: &impl ConnectionTrait, user: &user::Model) -> Result<Pair, IssueError> {
        let (refresh, refresh_jti) = self.new_refresh(db, user, &crypto::random_hex(16)).await?;
        Ok(Pair { refresh, access: self.access_for(user)?, refresh_jti })
    }

    async fn new_refresh(
        &self,
        db: &impl ConnectionTrait,
        user: &user::Model,
        family: &str,
    ) -> Result<(String, String), IssueError> {
        let jti = new_jti();
        let lifetime = self.settings.refresh_token_lifetime;
        let token = self.encode(REFRESH, user, lifetime, &jti)?;
        let now = Utc::now();
        outstanding::ActiveModel {
            jti: Set(jti.clone()),
            user_id: Set(user.id),
            family_id: Set(family.to_owned()),
            created_at: Set(now),
            expires_at: Set(now + chrono::Duration::seconds(i64::try_from(lifetime).unwrap_or(i64::MAX / 1000))),
            rotated_at: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await?;
        Ok((token, jti))
    }

    /// A valid refresh token: signed, unexpired, of type refresh, not blacklisted, its user
    /// active and its stamp current. Returns the claims, the user and its outstanding row.
    async fn check_refresh(
        &self,
        db: &impl ConnectionTrait,
        token: &str,
    ) -> Result<(Claims, user::Model, outstanding::Model), JwtError> {
        let claims = self.decode(token, Some(REFRESH))?;
        // The user first: a deleted user's rows are gone, and nothing may be recorded for them.
        let user = match claims.user_id {
            Some(id) => user::Entity::find_by_id(id).one(db).await?,
            None => None,
        };
        let user = user.filter(|u| u.is_active).ok_or(TokenError::NoActiveAccount)?;
        let (row, blacklisted) = self.outstanding_row(db, &claims).await?;
        // A rotated-away token goes on even if its rotation blacklisted it: presenting it
        // again is a reuse, and `refresh` must see it to revoke the family.
        if blacklisted && row.rotated_at.is_none() {
            return Err(TokenError::Token(msg::BLACKLISTED).into());
        }
        if !stamp_matches(claims.stamp.as_deref(), &user.security_stamp) {
            return Err(TokenError::PasswordChanged.into());
        }
        Ok((claims, user, row))
    }

    /// The refresh token's outstanding row, and whether it is blacklisted. A token signed by
    /// our key but never recorded (issued elsewhere, e.g. by simplejwt with the same key) is
    /// recorded now, so it can be rotated and blacklisted.
    async fn outstanding_row(
        &self,
        db: &impl ConnectionTrait,
        claims: &Claims,
    ) -> Result<(outstanding::Model, bool), JwtError> {
        let row = outstanding::Entity::find()
            .filter(outstanding::Column::Jti.eq(&claims.jti))
            .find_also_related(blacklisted::Entity)
            .one(db)
            .await?;
        match row {
            Some((row, blacklisted)) => Ok((row, blacklisted.is_some())),
            None => Ok((self.record_foreign(db, claims).await?, false)),
        }
    }

    async fn record_foreign(&self, db: &impl ConnectionTrait, claims: &Claims) -> Result<outstanding::Model, JwtError> {
        let user_id = claims.user_id.ok_or(TokenError::NoActiveAccount)?;
        let expires_at = Utc.timestamp_opt(claims.exp, 0).single().unwrap_or_else(Utc::now);
        let row = outstanding::ActiveModel {
            jti: Set(claims.jti.clone()),
            user_id: Set(user_id),
            family_id: Set(crypto::random_hex(16)),
            created_at: Set(Utc::now()),
            expires_at: Set(expires_at),
            rotated_at: Set(None),
            ..Default::default()
        };
        outstanding::Entity::insert(row)
            .on_conflict(OnConflict::column(outstanding::Column::Jti).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        outstanding::Entity::find()
            .filter(outstanding::Column::Jti.eq(&claims.jti))
            .one(db)
            .await?
            .ok_or_else(|| TokenError::NoActiveAccount.into())
    }

    /// `POST /api/token/refresh/`: a new access token, and with rotation a new refresh
    /// token. The rotation is a compare-and-swap on the old token's row: the loser of a
    /// race, and anyone replaying a rotated-away token, finds it taken, and the whole
    /// family is blacklisted (theft detection) — whatever `blacklist_after_rotation` and
    /// `rotate_refresh_tokens` now say.
    pub async fn refresh(&self, db: &impl ConnectionTrait, token: &str) -> Result<Refreshed, JwtError> {
        let (_, user, row) = self.check_refresh(db, token).await?;
        if row.rotated_at.is_some() {
            return Err(reused(db, user.id, row.family_id).await);
        }
        let access = self.access_for(&user)?;
        if !self.rotates() {
            return Ok(Refreshed { access, refresh: None, user, rotated_to: None });
        }
        let won = outstanding::Entity::update_many()
            .col_expr(outstanding::Column::RotatedAt, Expr::value(Utc::now()))
            .filter(outstanding::Column::Id.eq(row.id))
            .filter(outstanding::Column::RotatedAt.is_null())
            .exec(db)
            .await?
            .rows_affected
            == 1;
        if !won {
            return Err(reused(db, user.id, row.family_id).await);
        }
        if self.settings.blacklist_after_rotation {
            blacklist_rows(db, &[row.id]).await?;
        }
        let (refresh, jti) = self.new_refresh(db, &user, &row.family_id).await?;
        Ok(Refreshed { access, refresh: Some(refresh), user, rotated_to: Some(jti) })
    }

    /// `POST /api/token/verify/`: any valid token; a blacklisted or rotated-away refresh
    /// token is refused whatever the settings.
    pub async fn verify(&self, db: &impl ConnectionTrait, token: &str) -> Result<(), JwtError> {
        let claims = self.decode(token, None)?;
        if claims.token_type == REFRESH {
            let row = outstanding::Entity::find()
                .filter(outstanding::Column::Jti.eq(&claims.jti))
                .find_also_related(blacklisted::Entity)
                .one(db)
                .await?;
            if matches!(row, Some((_, Some(_)))) || row.as_ref().is_some_and(|(r, _)| r.rotated_at.is_some()) {
                return Err(TokenError::Token(msg::BLACKLISTED).into());
            }
        }
        Ok(())
    }

    /// `POST /api/token/blacklist/` and logout with `{"refresh": ...}`; returns the token's
    /// outstanding row (its user and `jti`).
    pub async fn blacklist(&self, db: &impl ConnectionTrait, token: &str) -> Result<outstanding::Model, JwtError> {
        let claims = self.decode(token, Some(REFRESH))?;
        let (row, blacklisted) = self.outstanding_row(db, &claims).await?;
        if blacklisted {
            return Err(TokenError::Token(msg::BLACKLISTED).into());
        }
        blacklist_rows(db, &[row.id]).await?;
        Ok(row)
    }
}

/// Blacklists every outstanding refresh token of a user (`/logoutall/`).
pub async fn blacklist_user(db: &impl ConnectionTrait, user_id: i64) -> Result<(), DbErr> {
    let ids: Vec<i64> = outstanding::Entity::find()
        .filter(outstanding::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    blacklist_rows(db, &ids).await
}

/// A rotated-away token was presented: its whole family is blacklisted.
async fn reused(db: &impl ConnectionTrait, user_id: i64, family: String) -> JwtError {
    match revoke_family(db, &family).await {
        Ok(revoked) => TokenError::Reused { user_id, family, revoked }.into(),
        Err(e) => e.into(),
    }
}

/// Blacklists every token of a family; returns how many it has.
async fn revoke_family(db: &impl ConnectionTrait, family: &str) -> Result<usize, DbErr> {
    let ids: Vec<i64> = outstanding::Entity::find()
        .filter(outstanding::Column::FamilyId.eq(family))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    blacklist_rows(db, &ids).await?;
    Ok(ids.len())
}

async fn blacklist_rows(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let rows = ids.iter().map(|id| blacklisted::ActiveModel {
        token_id: Set(*id),
        blacklisted_at: Set(now),
        ..Default::default()
    });
    blacklisted::Entity::insert_many(rows)
        .on_conflict(OnConflict::column(blacklisted::Column::TokenId).do_nothing().to_owned())
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

/// Deletes expired outstanding tokens and their blacklist rows (`flushexpiredtokens`).
pub async fn flush_expired(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let done =
        outstanding::Entity::delete_many().filter(outstanding::Column::ExpiresAt.lte(Utc::now())).exec(db).await?;
    Ok(done.rows_affected)
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

/// The generated HS256 key: created once by whichever instance starts first (an insert
/// that does nothing on conflict), then read by all.
async fn shared_hs_key(db: &impl ConnectionTrait) -> Result<String, KeyError> {
    let row = secret::ActiveModel {
        name: Set(HS_KEY_NAME.into()),
        value: Set(crypto::random_hex(32)),
        created_at: Set(Utc::now()),
    };
    secret::Entity::insert(row)
        .on_conflict(OnConflict::column(secret::Column::Name).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    let found = secret::Entity::find_by_id(HS_KEY_NAME.to_owned()).one(db).await?;
    found.map(|s| s.value).ok_or_else(|| KeyError::Db(DbErr::RecordNotFound(HS_KEY_NAME.into())))
}

fn pem_keys(algorithm: Algorithm, settings: &config::Jwt) -> Result<(EncodingKey, DecodingKey), KeyError> {
    let read = |path: &str| std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_owned(), source });
    let private = read(&settings.private_key_file)?;
    let public = read(&settings.public_key_file)?;
    let bad = |source| KeyError::Pem { algorithm, source };
    Ok(match algorithm {
        Algorithm::RS256 => {
            (EncodingKey::from_rsa_pem(&private).map_err(bad)?, DecodingKey::from_rsa_pem(&public).map_err(bad)?)
        }
        Algorithm::ES256 => {
            (EncodingKey::from_ec_pem(&private).map_err(bad)?, DecodingKey::from_ec_pem(&public).map_err(bad)?)
        }
        Algorithm::EdDSA => {
            (EncodingKey::from_ed_pem(&private).map_err(bad)?, DecodingKey::from_ed_pem(&public).map_err(bad)?)
        }
        // `load` maps the four configured algorithms; HS256 never comes here.
        other => {
            return Err(KeyError::Pem {
                algorithm: other,
                source: jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into(),
            });
        }
    })
}
