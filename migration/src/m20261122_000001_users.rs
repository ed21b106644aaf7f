//! Django's `auth` app: users, groups, permissions and their joins.
use sea_orm_migration::{prelude::*, schema::*};

use crate::cascade;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum AuthUser {
    Table,
    Id,
    Username,
    /// Lower-cased username: uniqueness is case-insensitive ("John" cannot impersonate "john"),
    /// while login stays case-sensitive as Django's.
    UsernameKey,
    Password,
    Email,
    FirstName,
    LastName,
    IsActive,
    IsStaff,
    IsSuperuser,
    LastLogin,
    DateJoined,
    /// Random value rotated on password change and "log out everywhere"; sessions and JWTs
    /// carry the value they were issued under, so rotating it revokes them all.
    SecurityStamp,
}

#[derive(DeriveIden)]
pub enum AuthGroup {
    Table,
    Id,
    Name,
}

#[derive(DeriveIden)]
pub enum AuthPermission {
    Table,
    Id,
    Name,
    AppLabel,
    Codename,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuthUser::Table)
                    .col(big_pk_auto(AuthUser::Id))
                    .col(string_len_uniq(AuthUser::Username, 150))
                    .col(string_len_uniq(AuthUser::UsernameKey, 300))
                    .col(string_len(AuthUser::Password, 255))
                    .col(string_len(AuthUser::Email, 254).default(""))
                    .col(string_len(AuthUser::FirstName, 150).default(""))
                    .col(string_len(AuthUser::LastName, 150).default(""))
                    .col(boolean(AuthUser::IsActive).default(true))
                    .col(boolean(AuthUser::IsStaff).default(false))
                    .col(boolean(AuthUser::IsSuperuser).default(false))
                    .col(timestamp_with_time_zone_null(AuthUser::LastLogin))
                    .col(timestamp_with_time_zone(AuthUser::DateJoined))
                    .col(string_len(AuthUser::SecurityStamp, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthGroup::Table)
                    .col(big_pk_auto(AuthGroup::Id))
                    .col(string_len_uniq(AuthGroup::Name, 150))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthPermission::Table)
                    .col(big_pk_auto(AuthPermission::Id))
                    .col(string_len(AuthPermission::Name, 255))
                    .col(string_len(AuthPermission::AppLabel, 100))
                    .col(string_len(AuthPermission::Codename, 100))
                    .index(
                        Index::create()
                            .name("auth_permission_app_codename_uniq")
                            .col(AuthPermission::AppLabel)
                            .col(AuthPermission::Codename)
                            .unique(),
                    )
                    .to_owned(),
            )
            .await?;
        let joins = [
            ("auth_user_groups", ("user_id", "auth_user"), ("group_id", "auth_group")),
            ("auth_user_user_permissions", ("user_id", "auth_user"), ("permission_id", "auth_permission")),
            ("auth_group_permissions", ("group_id", "auth_group"), ("permission_id", "auth_permission")),
        ];
        for (table, left, right) in joins {
            join_table(manager, table, left, right).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "auth_group_permissions",
            "auth_user_user_permissions",
            "auth_user_groups",
            "auth_permission",
            "auth_group",
            "auth_user",
        ] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}

/// A many-to-many join as Django makes it: its own id, two cascading keys, the pair unique
/// (which also indexes lookups by the first column), and an index on the second column.
async fn join_table(
    manager: &SchemaManager<'_>,
    table: &str,
    (left_col, left_table): (&str, &str),
    (right_col, right_table): (&str, &str),
) -> Result<(), DbErr> {
    let name = |s: &str| Alias::new(s.to_owned());
    manager
        .create_table(
            Table::create()
                .table(name(table))
                .col(big_pk_auto(name("id")))
                .col(big_integer(name(left_col)))
                .col(big_integer(name(right_col)))
                .foreign_key(&mut cascade((name(table), name(left_col)), (name(left_table), name("id"))))
                .foreign_key(&mut cascade((name(table), name(right_col)), (name(right_table), name("id"))))
                .index(
                    Index::create()
                        .name(format!("{table}_pair_uniq"))
                        .col(name(left_col))
                        .col(name(right_col))
                        .unique(),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create().name(format!("{table}_{right_col}_idx")).table(name(table)).col(name(right_col)).to_owned(),
        )
        .await
}
