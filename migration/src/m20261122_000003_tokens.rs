//! Opaque API tokens (DRF's authtoken, one per device as knox) and simplejwt's
//! outstanding/blacklisted refresh tokens.
use sea_orm_migration::{prelude::*, schema::*};

use crate::cascade;
use crate::m20261122_000001_users::AuthUser;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuthToken {
    Table,
    Id,
    /// SHA-256 of the 40-hex key; the key itself is shown once and never stored.
    KeyDigest,
    UserId,
    Name,
    CreatedAt,
    LastUsed,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum JwtOutstandingToken {
    Table,
    Id,
    /// Only the `jti` of a refresh token is kept, never the token.
    Jti,
    UserId,
    /// Every refresh token rotated from one login shares a family: reuse of a rotated-away
    /// token revokes the family (theft detection).
    FamilyId,
    CreatedAt,
    ExpiresAt,
    /// Set once by the refresh that rotated this token away (an atomic compare-and-swap).
    RotatedAt,
}

#[derive(DeriveIden)]
enum JwtBlacklistedToken {
    Table,
    Id,
    TokenId,
    BlacklistedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuthToken::Table)
                    .col(big_pk_auto(AuthToken::Id))
                    .col(binary_len(AuthToken::KeyDigest, 32).unique_key())
                    .col(big_integer(AuthToken::UserId))
                    .col(string_len(AuthToken::Name, 100).default(""))
                    .col(timestamp_with_time_zone(AuthToken::CreatedAt))
                    .col(timestamp_with_time_zone_null(AuthToken::LastUsed))
                    .col(timestamp_with_time_zone_null(AuthToken::ExpiresAt))
                    .foreign_key(&mut cascade((AuthToken::Table, AuthToken::UserId), (AuthUser::Table, AuthUser::Id)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JwtOutstandingToken::Table)
                    .col(big_pk_auto(JwtOutstandingToken::Id))
                    .col(string_len_uniq(JwtOutstandingToken::Jti, 64))
                    .col(big_integer(JwtOutstandingToken::UserId))
                    .col(string_len(JwtOutstandingToken::FamilyId, 64))
                    .col(timestamp_with_time_zone(JwtOutstandingToken::CreatedAt))
                    .col(timestamp_with_time_zone(JwtOutstandingToken::ExpiresAt))
                    .col(timestamp_with_time_zone_null(JwtOutstandingToken::RotatedAt))
                    .foreign_key(&mut cascade(
                        (JwtOutstandingToken::Table, JwtOutstandingToken::UserId),
                        (AuthUser::Table, AuthUser::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JwtBlacklistedToken::Table)
                    .col(big_pk_auto(JwtBlacklistedToken::Id))
                    .col(big_integer_uniq(JwtBlacklistedToken::TokenId))
                    .col(timestamp_with_time_zone(JwtBlacklistedToken::BlacklistedAt))
                    .foreign_key(&mut cascade(
                        (JwtBlacklistedToken::Table, JwtBlacklistedToken::TokenId),
                        (JwtOutstandingToken::Table, JwtOutstandingToken::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        let indexes = [
            ("auth_token_user_idx", AuthToken::Table.into_iden(), AuthToken::UserId.into_iden()),
            ("auth_token_expires_idx", AuthToken::Table.into_iden(), AuthToken::ExpiresAt.into_iden()),
            (
                "jwt_outstanding_user_idx",
                JwtOutstandingToken::Table.into_iden(),
                JwtOutstandingToken::UserId.into_iden(),
            ),
            (
                "jwt_outstanding_family_idx",
                JwtOutstandingToken::Table.into_iden(),
                JwtOutstandingToken::FamilyId.into_iden(),
            ),
            (
                "jwt_outstanding_expires_idx",
                JwtOutstandingToken::Table.into_iden(),
                JwtOutstandingToken::ExpiresAt.into_iden(),
            ),
        ];
        for (name, table, col) in indexes {
            manager.create_index(Index::create().name(name).table(table).col(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["jwt_blacklisted_token", "jwt_outstanding_token", "auth_token"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
