//! The signing keys kept in the database. There is always a current key (it signs) and a
//! next one: published in the JWKS ahead, so that verifiers caching the set hold it before it
//! signs anything. A rotation makes the next key current — new tokens carry it at once, and
//! no verifier meets an unknown `kid` — publishes a new next key, and retires the old key
//! with a `not_after` (the expiry of the last token it can have signed), after which it is
//! deleted. Every change runs under a lock (a PostgreSQL advisory lock, SQLite's write lock),
//! so instances starting together make one key, not one each.
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
    /// How long the new key had been published before it began to sign (`None`: made now,
    /// so verifiers that cache the JWKS meet it only when they fetch the set again).
    pub published_for: Option<Duration>,
    /// The key that signed until now, and when the last token it signed expires.
    pub previous: Option<(String, DateTime<Utc>)>,
    /// The key published now to sign after the next rotation.
    pub next: String,
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

/// The key that signs: the newest activated, unretired one.
pub fn current(rows: &[signing_key::Model]) -> Option<&signing_key::Model> {
    rows.iter().filter(|r| r.activated_at.is_some() && r.retired_at.is_none()).max_by_key(|r| r.id)
}

/// The key published to sign after the next rotation.
fn next(rows: &[signing_key::Model]) -> Option<&signing_key::Model> {
    rows.iter().filter(|r| r.activated_at.is_none() && r.retired_at.is_none()).max_by_key(|r| r.id)
}

fn is(row: &signing_key::Model, algorithm: Algorithm) -> bool {
    keys::parse_algorithm(&row.algorithm) == Some(algorithm)
}

/// How long a retired key must keep verifying: the longest token lifetime, the leeway, and
/// the time an instance that has not heard of the rotation may go on signing with it.
fn retention(settings: &config::Jwt) -> Duration {
    let lifetime = settings.access_token_lifetime.max(settings.refresh_token_lifetime);
    let lag = settings.keys_poll_interval.saturating_mul(2).saturating_add(60);
    let secs = lifetime.saturating_add(settings.leeway).saturating_add(lag);
    Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// Takes the lock, deletes the keys no token can need any more, and reads the rest.
async fn lock_and_read(txn: &impl ConnectionTrait) -> Result<Vec<signing_key::Model>, KeyError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(KEYS_LOCK).await?;
    }
    // On SQLite this DELETE is the transaction's first statement: it takes the write lock,
    // whether or not it deletes anything.
    signing_key::Entity::delete_many().filter(signing_key::Column::NotAfter.lt(Utc::now())).exec(txn).await?;
    rows(txn).await
}

/// At start-up: a current key of `jwt.algorithm` (made at first start, or when the algorithm
/// changed: the old key then verifies until its tokens have expired) and a next one. `Some`
/// when the signing key changed.
pub async fn prepare(db: &DatabaseConnection, settings: &config::Jwt) -> Result<Option<Rotated>, KeyError> {
    let wanted = keys::algorithm(settings.algorithm);
    let txn = db.begin().await?;
    let rows = lock_and_read(&txn).await?;
    let change = match current(&rows) {
        Some(row) if is(row, wanted) => None,
        Some(_) => Some(activate(&txn, settings, &rows, "algorithm changed").await?),
        None => {
            let legacy = match wanted {
                Algorithm::HS256 => adopt_legacy_secret(&txn).await?,
                _ => None,
            };
            Some(match legacy {
                Some(material) => activate_new(&txn, settings, &rows, material, "first start").await?,
                None => activate(&txn, settings, &rows, "first start").await?,
            })
        }
    };
    let next = publish_next(&txn, wanted).await?;
    txn.commit().await?;
    Ok(change.map(|c| Rotated { next, ..c }))
}

/// `portcullis rotatekeys`: the next key signs from now on (a new one if it is not of
/// `jwt.algorithm`), a new next key is published, and the old key verifies until every
/// token it signed has expired.
pub async fn rotate(db: &DatabaseConnection, settings: &config::Jwt) -> Result<Rotated, KeyError> {
    let wanted = keys::algorithm(settings.algorithm);
    let txn = db.begin().await?;
    let rows = lock_and_read(&txn).await?;
    let rotated = activate(&txn, settings, &rows, "rotatekeys").await?;
    let next = publish_next(&txn, wanted).await?;
    txn.commit().await?;
    Ok(Rotated { next, ..rotated })
}

/// Makes the next key current when it is of `jwt.algorithm`; otherwise a new one.
async fn activate(
    txn: &impl ConnectionTrait,
    settings: &config::Jwt,
    rows: &[signing_key::Model],
    reason: &'static str,
) -> Result<Rotated, KeyError> {
    let wanted = keys::algorithm(settings.algorithm);
    let Some(next) = next(rows).filter(|n| is(n, wanted)) else {
        return activate_new(txn, settings, rows, generate(wanted)?, reason).await;
    };
    let (now, previous) = (Utc::now(), retire_current(txn, settings, rows).await?);
    let mut row: signing_key::ActiveModel = next.clone().into();
    row.activated_at = Set(Some(now));
    row.update(txn).await?;
    let published_for = Some(now - next.created_at);
    Ok(Rotated { kid: next.kid.clone(), algorithm: wanted, published_for, previous, next: String::new(), reason })
}

/// Stores `material` as the current key, never published before.
async fn activate_new(
    txn: &impl ConnectionTrait,
    settings: &config::Jwt,
    rows: &[signing_key::Model],
    material: Material,
    reason: &'static str,
) -> Result<Rotated, KeyError> {
    let previous = retire_current(txn, settings, rows).await?;
    let (kid, algorithm) = (material.kid.clone(), material.algorithm);
    insert(txn, material, true).await?;
    Ok(Rotated { kid, algorithm, published_for: None, previous, next: String::new(), reason })
}

/// Retires the current key: it verifies until `not_after`. A key pair's private half is not
/// needed for that and goes now; an HS256 secret verifies too, so it stays until the row goes.
async fn retire_current(
    txn: &impl ConnectionTrait,
    settings: &config::Jwt,
    rows: &[signing_key::Model],
) -> Result<Option<(String, DateTime<Utc>)>, KeyError> {
    let Some(current) = current(rows) else { return Ok(None) };
    let (now, not_after) = (Utc::now(), Utc::now() + retention(settings));
    signing_key::Entity::update_many()
        .col_expr(signing_key::Column::RetiredAt, Expr::value(now))
        .col_expr(signing_key::Column::NotAfter, Expr::value(not_after))
        .col_expr(
            signing_key::Column::PrivateKey,
            Expr::cust("CASE WHEN algorithm = 'HS256' THEN private_key ELSE NULL END"),
        )
        .filter(signing_key::Column::ActivatedAt.is_not_null())
        .filter(signing_key::Column::RetiredAt.is_null())
        .exec(txn)
        .await?;
    Ok(Some((current.kid.clone(), not_after)))
}

/// Makes sure a next key of `algorithm` is published (one of another algorithm, which never
/// signed anything, is dropped); returns its kid.
async fn publish_next(txn: &impl ConnectionTrait, algorithm: Algorithm) -> Result<String, KeyError> {
    let rows = rows(txn).await?;
    if let Some(next) = next(&rows).filter(|n| is(n, algorithm)) {
        return Ok(next.kid.clone());
    }
    signing_key::Entity::delete_many()
        .filter(signing_key::Column::ActivatedAt.is_null())
        .filter(signing_key::Column::RetiredAt.is_null())
        .exec(txn)
        .await?;
    let material = generate(algorithm)?;
    let kid = material.kid.clone();
    insert(txn, material, false).await?;
    Ok(kid)
}

async fn insert(txn: &impl ConnectionTrait, material: Material, active: bool) -> Result<(), KeyError> {
    let Material { kid, algorithm, private, public_jwk } = material;
    let now = Utc::now();
    signing_key::ActiveModel {
        kid: Set(kid),
        algorithm: Set(format!("{algorithm:?}")),
        private_key: Set(Some(private)),
        public_jwk: Set(public_jwk),
        created_at: Set(now),
        activated_at: Set(active.then_some(now)),
        retired_at: Set(None),
        not_after: Set(None),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok(())
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

    fn row(id: i64, m: Material, activated: bool, not_after: Option<DateTime<Utc>>) -> signing_key::Model {
        let now = Utc::now();
        signing_key::Model {
            id,
            kid: m.kid,
            algorithm: format!("{:?}", m.algorithm),
            private_key: Some(m.private),
            public_jwk: m.public_jwk,
            created_at: now,
            activated_at: activated.then_some(now),
            retired_at: not_after.map(|_| now),
            not_after,
        }
    }

    #[test]
    fn a_retired_key_verifies_and_is_published_until_its_not_after_and_never_after() {
        let settings = crate::config::Settings::defaults().unwrap().jwt;
        let hour = Duration::hours(1);
        let rows = vec![
            row(1, generate(Algorithm::ES256).unwrap(), true, Some(Utc::now() - hour)),
            row(2, generate(Algorithm::ES256).unwrap(), true, Some(Utc::now() + hour)),
            row(3, generate(Algorithm::ES256).unwrap(), true, None),
            row(4, generate(Algorithm::ES256).unwrap(), false, None),
        ];
        let set = keys::KeySet::from_rows(&rows, &settings).unwrap();
        assert_eq!(set.signer().kid, rows[2].kid);
        let published: Vec<String> = set.jwks(Utc::now())["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().into())
            .collect();
        assert_eq!(
            published,
            [rows[2].kid.clone(), rows[3].kid.clone(), rows[1].kid.clone()],
            "current, next, retired; not the expired one"
        );
        let found = |kid: &str, at| matches!(set.verifier(Some(kid), at), keys::Lookup::Found(_));
        assert!(!found(&rows[0].kid, Utc::now()));
        assert!(found(&rows[1].kid, Utc::now()) && !found(&rows[1].kid, Utc::now() + hour + hour));
        assert!(format!("{:?}", rows[3]).contains("[redacted]") && !format!("{:?}", rows[3]).contains("PRIVATE"));
    }

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
