//! The signing keys: an HS256 secret from config, or generated once with the OS CSPRNG and
//! kept in the database (shared by every instance, never logged); PEM files for RS256,
//! ES256 and EdDSA.
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sea_orm::{ConnectionTrait, DbErr};

use crate::{
    config::{self, JwtAlgorithm},
    store,
};

const HS_KEY_NAME: &str = "jwt_hs256_key";

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

/// The pinned algorithm and its keys.
pub(super) async fn load(
    settings: &config::Jwt,
    db: &impl ConnectionTrait,
) -> Result<(Algorithm, EncodingKey, DecodingKey), KeyError> {
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
    Ok((algorithm, encoding, decoding))
}

/// The generated HS256 key, shared by every instance.
async fn shared_hs_key(db: &impl ConnectionTrait) -> Result<String, KeyError> {
    Ok(store::shared_secret(db, HS_KEY_NAME).await?)
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
