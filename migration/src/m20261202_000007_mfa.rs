//! The second factor (TOTP) and assurance levels: a user's TOTP secret (sealed, never in
//! clear), their single-use recovery codes (digests), the pending logins between a right
//! password and the code (digests of the ephemeral tokens), and on every session and token
//! the assurance level it was obtained at (1: a password, 2: a password and a second factor)
//! with when the second factor was last proven. Existing sessions and tokens are level 1.
use sea_orm_migration::{prelude::*, schema::*};

use crate::cascade;
use crate::m20261122_000001_users::AuthUser;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MfaTotp {
    Table,
    Id,
    UserId,
    /// AES-256-GCM nonce and ciphertext of the secret, under a key kept outside the database.
    Secret,
    /// Which key sealed it (a fingerprint, not the key), to tell a wrong key from a bad row.
    KeyId,
    /// Set when a first code confirmed the setup; until then the secret is pending.
    ConfirmedAt,
    /// The last RFC 6238 time step accepted: a code of that step or an earlier one is refused.
    LastStep,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MfaRecoveryCode {
    Table,
    Id,
    UserId,
    /// SHA-256 of the user id and the code; the code is shown once.
    Digest,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MfaChallenge {
    Table,
    Id,
    /// SHA-256 of the ephemeral token handed to the client after its right password.
    Digest,
    UserId,
    /// What completing it issues: "session", "token" or "jwt".
    Purpose,
    /// The token's device name (`/api-token-auth/`).
    TokenName,
    /// The device cookie id the password check was counted under, if any.
    Device,
    /// Whether completing it hands out a device cookie.
    IssueDevice,
    /// The user's security stamp at the password check: a password change ends the login.
    AuthStamp,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum AuthSession {
    Table,
}

#[derive(DeriveIden)]
enum AuthToken {
    Table,
}

#[derive(DeriveIden)]
enum Assurance {
    Aal,
    AalAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MfaTotp::Table)
                    .col(big_pk_auto(MfaTotp::Id))
                    .col(big_integer_uniq(MfaTotp::UserId))
                    .col(binary(MfaTotp::Secret))
                    .col(string_len(MfaTotp::KeyId, 16))
                    .col(timestamp_with_time_zone_null(MfaTotp::ConfirmedAt))
                    .col(big_integer_null(MfaTotp::LastStep))
                    .col(timestamp_with_time_zone(MfaTotp::CreatedAt))
                    .foreign_key(&mut cascade((MfaTotp::Table, MfaTotp::UserId), (AuthUser::Table, AuthUser::Id)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaRecoveryCode::Table)
                    .col(big_pk_auto(MfaRecoveryCode::Id))
                    .col(big_integer(MfaRecoveryCode::UserId))
                    .col(binary_len(MfaRecoveryCode::Digest, 32))
                    .col(timestamp_with_time_zone_null(MfaRecoveryCode::UsedAt))
                    .col(timestamp_with_time_zone(MfaRecoveryCode::CreatedAt))
                    .foreign_key(&mut cascade(
                        (MfaRecoveryCode::Table, MfaRecoveryCode::UserId),
                        (AuthUser::Table, AuthUser::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaChallenge::Table)
                    .col(big_pk_auto(MfaChallenge::Id))
                    .col(binary_len(MfaChallenge::Digest, 32).unique_key())
                    .col(big_integer(MfaChallenge::UserId))
                    .col(string_len(MfaChallenge::Purpose, 16))
                    .col(string_len(MfaChallenge::TokenName, 100).default(""))
                    .col(string_len_null(MfaChallenge::Device, 64))
                    .col(boolean(MfaChallenge::IssueDevice).default(false))
                    .col(string_len(MfaChallenge::AuthStamp, 64))
                    .col(timestamp_with_time_zone(MfaChallenge::CreatedAt))
                    .col(timestamp_with_time_zone(MfaChallenge::ExpiresAt))
                    .foreign_key(&mut cascade(
                        (MfaChallenge::Table, MfaChallenge::UserId),
                        (AuthUser::Table, AuthUser::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        let indexes = [
            ("mfa_recovery_code_user_idx", MfaRecoveryCode::Table.into_iden(), MfaRecoveryCode::UserId.into_iden()),
            ("mfa_challenge_user_idx", MfaChallenge::Table.into_iden(), MfaChallenge::UserId.into_iden()),
            ("mfa_challenge_expires_idx", MfaChallenge::Table.into_iden(), MfaChallenge::ExpiresAt.into_iden()),
        ];
        for (name, table, col) in indexes {
            manager.create_index(Index::create().name(name).table(table).col(col).to_owned()).await?;
        }
        // One ALTER per column: SQLite adds one column per statement.
        for table in [AuthSession::Table.into_iden(), AuthToken::Table.into_iden()] {
            manager
                .alter_table(
                    Table::alter().table(table.clone()).add_column(small_integer(Assurance::Aal).default(1)).to_owned(),
                )
                .await?;
            manager
                .alter_table(
                    Table::alter().table(table).add_column(timestamp_with_time_zone_null(Assurance::AalAt)).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [AuthSession::Table.into_iden(), AuthToken::Table.into_iden()] {
            for col in [Assurance::Aal, Assurance::AalAt] {
                manager.alter_table(Table::alter().table(table.clone()).drop_column(col).to_owned()).await?;
            }
        }
        for table in ["mfa_challenge", "mfa_recovery_code", "mfa_totp"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
