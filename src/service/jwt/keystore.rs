//! The signing keys kept in the database: made at first start, replaced by a rotation,
//! retired with a `not_after` (the expiry of the last token they can have signed), then
//! deleted. Every change runs under a lock (a PostgreSQL advisory lock, SQLite's write
//! lock), so instances starting together make one key, not one each.
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::Algorithm;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait, sea_query::Expr,
};

use super::keys::{self, KeyError};
use crate::{
    config, crypto,
    store::jwt::{secret, signing_key},
};

/// Where the HS256 secret was kept before keys had their own table: adopted at the first
/// start after the upgrade, so tokens issued before it stay valid.
const LEGACY_HS_SECRET: &str = "jwt_hs256_key";

/// Serialises key changes between PostgreSQL instances (an arbitrary constant).
const KEYS_LOCK: &str = "SELECT pg_advisory_xact_lock(7092907289375245684)";

/// A key change: what signs from now on, and what it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub kid: String,
    pub algorithm: Algorithm,
    /// The key that signed until now, and when the last token it signed expires.
    pub previous: Option<(String, DateTime<Utc>)>,
    /// "first start", "rotatekeys" or "algorithm changed".
    pub reason: &'static str,
}

/// A new key's material; the private part is never logged.
struct Material {
    kid: String,
    algorithm: Algorithm,
    private: String,
    public_jwk: Option<String>,
}

/// Every key row, oldest first.
pub async fn rows(db: &impl ConnectionTrait) -> Result<Vec<signing_key::Model>, KeyError> {
    Ok(signing_key::Entity::find().order_by_asc(signing_key::Column::Id).all(db).await?)
}

/// How long a retired key must keep verifying: the longest token lifetime, the leeway, and
/// the time an instance that has not heard of the rotation may go on signing with it.
fn retention(settings: &config::Jwt) -> Duration {
    let lifetime = settings.access_token_lifetime.max(settings.refresh_token_lifetime);
    let lag = settings.keys_poll_interval.saturating_mul(2).saturating_add(60);
    let secs = lifetime.saturating_add(settings.leeway).saturating_add(lag);
    Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// Takes the lock, and deletes the keys no token can need any more.
async fn lock_and_prune(txn: &impl ConnectionTrait) -> Result<(), KeyError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(KEYS_LOCK).await?;
    }
    // On SQLite this DELETE is the transaction's first statement: it takes the write lock,
    // whether or not it deletes anything.
    signing_key::Entity::delete_many().filter(signing_key::Column::NotAfter.lt(Utc::now())).exec(txn).await?;
    Ok(())
}

/// At start-up: the current key, made if there is none or if `jwt.algorithm` changed since
/// it was (the old one then verifies until its tokens have expired). `Some` when a key was made.
pub async fn prepare(db: &DatabaseConnection, settings: &config::Jwt) -> Result<Option<Rotated>, KeyError> {
    let wanted = keys::algorithm(settings.algorithm);
    let txn = db.begin().await?;
    lock_and_prune(&txn).await?;
    let current = current(&txn).await?;
    let change = match current {
        Some(row) if keys::parse_algorithm(&row.algorithm) == Some(wanted) => None,
        Some(row) => Some(replace(&txn, settings, Some(row), generate(wanted)?, "algorithm changed").await?),
        None => {
            let material = match wanted {
                Algorithm::HS256 => adopt_legacy_secret(&txn).await?.map_or_else(|| generate(wanted), Ok)?,
                _ => generate(wanted)?,
            };
            Some(replace(&txn, settings, None, material, "first start").await?)
        }
    };
    txn.commit().await?;
    Ok(change)
}

/// `portcullis rotatekeys`: a new key of `jwt.algorithm` signs from now on; the old one
/// verifies until every token it signed has expired.
pub async fn rotate(db: &DatabaseConnection, settings: &config::Jwt) -> Result<Rotated, KeyError> {
    let material = generate(keys::algorithm(settings.algorithm))?;
    let txn = db.begin().await?;
    lock_and_prune(&txn).await?;
    let previous = current(&txn).await?;
    let rotated = replace(&txn, settings, previous, material, "rotatekeys").await?;
    txn.commit().await?;
    Ok(rotated)
}

async fn current(db: &impl ConnectionTrait) -> Result<Option<signing_key::Model>, KeyError> {
    Ok(signing_key::Entity::find()
        .filter(signing_key::Column::RetiredAt.is_null())
        .order_by_desc(signing_key::Column::Id)
        .one(db)
        .await?)
}

/// Retires every unretired key and stores the new one.
async fn replace(
    txn: &impl ConnectionTrait,
    settings: &config::Jwt,
    previous: Option<signing_key::Model>,
    material: Material,
    reason: &'static str,
) -> Result<Rotated, KeyError> {
    let now = Utc::now();
    let not_after = now + retention(settings);
    // A key pair's private half is not needed to verify: it goes with the retirement. An
    // HS256 secret verifies too, so it stays until the row is deleted.
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::RetiredAt, Expr::value(now))
        .col_expr(signing_key::Column::NotAfter, Expr::value(not_after))
        .col_expr(
            signing_key::Column::PrivateKey,
            Expr::cust("CASE WHEN algorithm = 'HS256' THEN private_key ELSE NULL END"),
        )
        .filter(signing_key::Column::RetiredAt.is_null())
        .exec(txn)
        .await?;
    let Material { kid, algorithm, private, public_jwk } = material;
    signing_key::ActiveModel {
        kid: Set(kid.clone()),
        algorithm: Set(format!("{algorithm:?}")),
        private_key: Set(Some(private)),
        public_jwk: Set(public_jwk),
        created_at: Set(now),
        retired_at: Set(None),
        not_after: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(Rotated { kid, algorithm, previous: previous.map(|p| (p.kid, not_after)), reason })
}

/// The HS256 secret of a version before keys had their own table, moved into it.
async fn adopt_legacy_secret(txn: &impl ConnectionTrait) -> Result<Option<Material>, KeyError> {
    let Some(row) = secret::Entity::find_by_id(LEGACY_HS_SECRET.to_owned()).one(txn).await? else {
        return Ok(None);
    };
    secret::Entity::delete_by_id(LEGACY_HS_SECRET.to_owned()).exec(txn).await?;
    Ok(Some(hs_material(row.value)))
}

fn hs_material(secret: String) -> Material {
    Material { kid: keys::hs_kid(secret.as_bytes()), algorithm: Algorithm::HS256, private: secret, public_jwk: None }
}

/// A new key from the OS CSPRNG: a 256-bit HS256 secret, RSA-2048, P-256 or Ed25519, with
/// the same RustCrypto crates jsonwebtoken signs with; key pairs as PKCS#8 PEM.
fn generate(algorithm: Algorithm) -> Result<Material, KeyError> {
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
    use rsa::pkcs8::LineEnding;
    let failed = |why: String| KeyError::Generate { algorithm, why };
    let pem = match algorithm {
        Algorithm::HS256 => return Ok(hs_material(crypto::random_hex(32))),
        Algorithm::RS256 => {
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| failed(e.to_string()))?;
            key.to_pkcs8_pem(LineEnding::LF).map_err(|e| failed(e.to_string()))?
        }
        Algorithm::ES256 => {
            let key = p256::SecretKey::random(&mut rand_core::OsRng);
            key.to_pkcs8_pem(LineEnding::LF).map_err(|e| failed(e.to_string()))?
        }
        // PKCS#8 v1 (no public key inside): the form jsonwebtoken reads.
        Algorithm::EdDSA => KeypairBytes { secret_key: crypto::random_bytes::<32>(), public_key: None }
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| failed(e.to_string()))?,
        other => return Err(KeyError::Generate { algorithm: other, why: "not a supported algorithm".into() }),
    };
    let encoding = keys::encoding_from_pem(algorithm, pem.as_bytes()).map_err(|e| failed(e.to_string()))?;
    let (jwk, kid) = keys::public_jwk(&encoding, algorithm).map_err(|e| failed(e.to_string()))?;
    let public_jwk = serde_json::to_string(&jwk).map_err(|e| failed(e.to_string()))?;
    Ok(Material { kid, algorithm, private: pem.to_string(), public_jwk: Some(public_jwk) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_verify_with_their_own_jwk() {
        for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            let m = generate(algorithm).unwrap();
            assert!(!format!("{:?}", m.kid).is_empty());
            let claims = serde_json::json!({"exp": Utc::now().timestamp() + 60});
            let (encoding, decoding) = match algorithm {
                Algorithm::HS256 => (
                    jsonwebtoken::EncodingKey::from_secret(m.private.as_bytes()),
                    jsonwebtoken::DecodingKey::from_secret(m.private.as_bytes()),
                ),
                _ => {
                    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(m.public_jwk.as_deref().unwrap()).unwrap();
                    (
                        keys::encoding_from_pem(algorithm, m.private.as_bytes()).unwrap(),
                        jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
                    )
                }
            };
            let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, &encoding).unwrap();
            let validation = jsonwebtoken::Validation::new(algorithm);
            assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok(), "{algorithm:?}");
        }
    }
}
