//! The JWT signing keys kept in the database (issue #16): generated at first start and by
//! `portcullis rotatekeys`, shared by every instance, published as a JWKS from before they
//! sign until no token they signed can still be valid. Keys given in the configuration (`jwt.signing_key`, PEM
//! files) are never stored here.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JwtSigningKey {
    Table,
    Id,
    /// The `kid` in the header of every token the key signs (RFC 7638 thumbprint for key
    /// pairs, a digest-derived id for HS256 secrets).
    Kid,
    /// `HS256`, `RS256`, `ES256` or `EdDSA`: a token is verified with its key's algorithm only.
    Algorithm,
    /// The private key (PKCS#8 PEM) or the HS256 secret. A key pair's is erased when the key
    /// is retired (only its public half is needed then); an HS256 secret also verifies, so it
    /// stays until the row goes.
    PrivateKey,
    /// The public JWK (RFC 7517) without `kid`/`alg`/`use`; NULL for HS256.
    PublicJwk,
    /// When it was published (in the JWKS from then on).
    CreatedAt,
    /// When it began to sign. NULL for the next key: published ahead, so that verifiers
    /// caching the JWKS hold it before the rotation that makes it sign.
    ActivatedAt,
    /// When it stopped signing (a rotation); NULL for the current and the next key.
    RetiredAt,
    /// When the last token it can have signed expires: it leaves the JWKS and the row is
    /// deleted then.
    NotAfter,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JwtSigningKey::Table)
                    .col(big_pk_auto(JwtSigningKey::Id))
                    .col(string_len_uniq(JwtSigningKey::Kid, 64))
                    .col(string_len(JwtSigningKey::Algorithm, 16))
                    .col(text_null(JwtSigningKey::PrivateKey))
                    .col(text_null(JwtSigningKey::PublicJwk))
                    .col(timestamp_with_time_zone(JwtSigningKey::CreatedAt))
                    .col(timestamp_with_time_zone_null(JwtSigningKey::ActivatedAt))
                    .col(timestamp_with_time_zone_null(JwtSigningKey::RetiredAt))
                    .col(timestamp_with_time_zone_null(JwtSigningKey::NotAfter))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(JwtSigningKey::Table).to_owned()).await
    }
}
