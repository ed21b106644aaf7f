//! Server-side sessions (Django's `django_session`, plus what a session list needs).
use sea_orm_migration::{prelude::*, schema::*};

use crate::cascade;
use crate::m20261122_000001_users::AuthUser;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuthSession {
    Table,
    Id,
    /// SHA-256 of the cookie value: a database dump does not let anyone log in.
    KeyDigest,
    /// What APIs show (`GET /sessions/`, `GET /session/`); never the cookie secret.
    PublicId,
    UserId,
    /// The user's security stamp at login (Django's `_auth_user_hash`).
    AuthStamp,
    /// The session's own data, a JSON object.
    Data,
    /// Bumped on every write so concurrent writers can merge instead of overwrite.
    Version,
    CreatedAt,
    LastSeen,
    ExpiresAt,
    Ip,
    UserAgent,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuthSession::Table)
                    .col(big_pk_auto(AuthSession::Id))
                    .col(binary_len(AuthSession::KeyDigest, 32).unique_key())
                    .col(string_len_uniq(AuthSession::PublicId, 32))
                    .col(big_integer(AuthSession::UserId))
                    .col(string_len(AuthSession::AuthStamp, 64))
                    .col(text(AuthSession::Data).default("{}"))
                    .col(big_integer(AuthSession::Version).default(0))
                    .col(timestamp_with_time_zone(AuthSession::CreatedAt))
                    .col(timestamp_with_time_zone(AuthSession::LastSeen))
                    .col(timestamp_with_time_zone(AuthSession::ExpiresAt))
                    .col(string_len_null(AuthSession::Ip, 45))
                    .col(string_len_null(AuthSession::UserAgent, 512))
                    .foreign_key(&mut cascade(
                        (AuthSession::Table, AuthSession::UserId),
                        (AuthUser::Table, AuthUser::Id),
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, col) in
            [("auth_session_user_idx", AuthSession::UserId), ("auth_session_expires_idx", AuthSession::ExpiresAt)]
        {
            manager.create_index(Index::create().name(name).table(AuthSession::Table).col(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuthSession::Table).to_owned()).await
    }
}
