//! Django's permissions and groups: `app_label.codename` on users and groups.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Set,
};

use super::{FieldErrors, ServiceError};
use crate::store::{
    perm::{group, group_permissions, permission, user_groups, user_permissions},
    user,
};

/// Splits "app_label.codename"; `None` when it is not of that form.
pub fn split(perm: &str) -> Option<(&str, &str)> {
    match perm.split_once('.') {
        Some((app, code)) if !app.is_empty() && !code.is_empty() && !code.contains('.') => Some((app, code)),
        _ => None,
    }
}

/// Splits "app_label.codename", or a field error naming the input.
pub fn parse(perm: &str) -> Result<(&str, &str), ServiceError> {
    split(perm).ok_or_else(|| {
        ServiceError::Invalid(FieldErrors::single(
            "permission",
            format!("{perm:?} is not of the form app_label.codename"),
        ))
    })
}

async fn find_permission(db: &impl ConnectionTrait, app: &str, code: &str) -> Result<Option<permission::Model>, DbErr> {
    permission::Entity::find()
        .filter(permission::Column::AppLabel.eq(app))
        .filter(permission::Column::Codename.eq(code))
        .one(db)
        .await
}

/// Django's `has_perm`: active superusers have everything; others need the permission on
/// themselves or on one of their groups.
pub async fn user_has_perm(db: &impl ConnectionTrait, account: &user::Model, perm: &str) -> Result<bool, DbErr> {
    if !account.is_active {
        return Ok(false);
    }
    if account.is_superuser {
        return Ok(true);
    }
    let Some((app, code)) = split(perm) else { return Ok(false) };
    let Some(found) = find_permission(db, app, code).await? else { return Ok(false) };
    let direct = user_permissions::Entity::find()
        .filter(user_permissions::Column::UserId.eq(account.id))
        .filter(user_permissions::Column::PermissionId.eq(found.id))
        .count(db)
        .await?;
    if direct > 0 {
        return Ok(true);
    }
    let groups: Vec<i64> = user_groups::Entity::find()
        .select_only()
        .column(user_groups::Column::GroupId)
        .filter(user_groups::Column::UserId.eq(account.id))
        .into_tuple()
        .all(db)
        .await?;
    if groups.is_empty() {
        return Ok(false);
    }
    let via_group = group_permissions::Entity::find()
        .filter(group_permissions::Column::GroupId.is_in(groups))
        .filter(group_permissions::Column::PermissionId.eq(found.id))
        .count(db)
        .await?;
    Ok(via_group > 0)
}

/// The permission row, created on first use (Django creates them from models; here they
/// are named by whoever grants them).
async fn ensure_permission(db: &impl ConnectionTrait, perm: &str) -> Result<permission::Model, ServiceError> {
    let (app, code) = parse(perm)?;
    if let Some(found) = find_permission(db, app, code).await? {
        return Ok(found);
    }
    let row = permission::ActiveModel {
        name: Set(format!("Can {}", code.replace('_', " "))),
        app_label: Set(app.to_owned()),
        codename: Set(code.to_owned()),
        ..Default::default()
    };
    Ok(row.insert(db).await?)
}

/// Gives `perm` to a user (`grant`); `false` when they had it already.
pub async fn grant(db: &impl ConnectionTrait, account: &user::Model, perm: &str) -> Result<bool, ServiceError> {
    let perm = ensure_permission(db, perm).await?;
    let row =
        user_permissions::ActiveModel { user_id: Set(account.id), permission_id: Set(perm.id), ..Default::default() };
    added(row.insert(db).await)
}

/// Takes `perm` from a user (`revoke`); `false` when they did not have it.
pub async fn revoke(db: &impl ConnectionTrait, account: &user::Model, perm: &str) -> Result<bool, ServiceError> {
    let (app, code) = parse(perm)?;
    let Some(perm) = find_permission(db, app, code).await? else { return Ok(false) };
    let done = user_permissions::Entity::delete_many()
        .filter(user_permissions::Column::UserId.eq(account.id))
        .filter(user_permissions::Column::PermissionId.eq(perm.id))
        .exec(db)
        .await?;
    Ok(done.rows_affected > 0)
}

async fn ensure_group(db: &impl ConnectionTrait, name: &str) -> Result<group::Model, ServiceError> {
    if let Some(found) = group::Entity::find().filter(group::Column::Name.eq(name)).one(db).await? {
        return Ok(found);
    }
    if name.is_empty() || name.chars().count() > 150 {
        return Err(ServiceError::Invalid(FieldErrors::single("group", "A group name has 1 to 150 characters.")));
    }
    Ok(group::ActiveModel { name: Set(name.to_owned()), ..Default::default() }.insert(db).await?)
}

/// Puts a user in a group, creating the group if needed (`addtogroup`).
pub async fn add_to_group(
    db: &impl ConnectionTrait,
    account: &user::Model,
    group_name: &str,
) -> Result<bool, ServiceError> {
    let group = ensure_group(db, group_name).await?;
    let row = user_groups::ActiveModel { user_id: Set(account.id), group_id: Set(group.id), ..Default::default() };
    added(row.insert(db).await)
}

/// Gives `perm` to every member of a group (`grant --group`).
pub async fn grant_group(db: &impl ConnectionTrait, group_name: &str, perm: &str) -> Result<bool, ServiceError> {
    let group = ensure_group(db, group_name).await?;
    let perm = ensure_permission(db, perm).await?;
    let row =
        group_permissions::ActiveModel { group_id: Set(group.id), permission_id: Set(perm.id), ..Default::default() };
    added(row.insert(db).await)
}

/// A join row inserted (`true`), or already there (`false`: the pair is unique, so a
/// concurrent grant of the same thing is not an error either).
fn added<T>(inserted: Result<T, DbErr>) -> Result<bool, ServiceError> {
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if crate::store::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The names of the user's groups, sorted.
pub async fn group_names(db: &impl ConnectionTrait, user_id: i64) -> Result<Vec<String>, DbErr> {
    let ids: Vec<i64> = user_groups::Entity::find()
        .select_only()
        .column(user_groups::Column::GroupId)
        .filter(user_groups::Column::UserId.eq(user_id))
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = group::Entity::find()
        .select_only()
        .column(group::Column::Name)
        .filter(group::Column::Id.is_in(ids))
        .into_tuple()
        .all(db)
        .await?;
    names.sort();
    Ok(names)
}
