//! Whether a user's email address is verified (`account.email_verification`). allauth keeps
//! it in a table of addresses; portcullis has one address per user, so a column beside it.
//! Existing users start unverified.
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261122_000001_users::AuthUser;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Column {
    EmailVerified,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuthUser::Table)
                    .add_column(boolean(Column::EmailVerified).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(AuthUser::Table).drop_column(Column::EmailVerified).to_owned()).await
    }
}
