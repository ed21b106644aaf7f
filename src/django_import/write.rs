//! Writing what the plan decided, one function a table, in batches. Rows already here (by
//! natural key) are left as they are and counted as present; Django's ids are mapped to the
//! ids here as each table is written, for the tables that refer to it.
use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, IntoActiveModel, Statement, TryInsertResult,
};

use super::{
    ImportError,
    plan::{Plan, UserRow},
    progress::Progress,
    report::{Count, Summary},
    source,
};
use crate::{
    crypto,
    service::users,
    store::{
        perm::{self, group, permission},
        session, token, user,
    },
};

/// Rows per INSERT: under SQLite's and PostgreSQL's bound-parameter limits for every table.
const BATCH: usize = 1000;

/// Inserts `rows` in batches and returns how many were written. With `unique` columns, a
/// row already there (by those columns) is left as it is and not counted; without, a
/// conflict is an error.
async fn insert_batches<E: EntityTrait>(
    txn: &DatabaseTransaction,
    rows: impl IntoIterator<Item = E::ActiveModel>,
    unique: &[E::Column],
    progress: &Progress,
) -> Result<u64, DbErr> {
    let mut rows = rows.into_iter().peekable();
    let mut new = 0;
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(BATCH).collect();
        let n = chunk.len();
        let insert = E::insert_many(chunk);
        new += if unique.is_empty() {
            insert.exec_without_returning(txn).await?
        } else {
            match insert.on_conflict_do_nothing_on(unique.iter().copied()).exec_without_returning(txn).await? {
                TryInsertResult::Inserted(n) => n,
                TryInsertResult::Empty | TryInsertResult::Conflicted => 0,
            }
        };
        progress.add(n);
    }
    Ok(new)
}

/// Django group id → id here.
pub(super) async fn groups(
    txn: &DatabaseTransaction,
    plan: &Plan,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<HashMap<i64, i64>, ImportError> {
    progress.phase("groups".into());
    let rows = plan.groups.iter().map(|g| group::ActiveModel { id: NotSet, name: Set(g.name.clone()) });
    let new = insert_batches::<group::Entity>(txn, rows, &[group::Column::Name], progress).await?;
    summary.groups = Count::of(plan.groups.len(), new);
    let here: HashMap<String, i64> =
        group::Entity::find().all(txn).await?.into_iter().map(|g| (g.name, g.id)).collect();
    Ok(plan.groups.iter().filter_map(|g| Some((g.id, *here.get(&g.name)?))).collect())
}

/// Django permission id → id here.
pub(super) async fn permissions(
    txn: &DatabaseTransaction,
    plan: &Plan,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<HashMap<i64, i64>, ImportError> {
    progress.phase("permissions".into());
    let rows = plan.permissions.iter().map(|p| permission::ActiveModel {
        id: NotSet,
        name: Set(p.name.clone()),
        app_label: Set(p.app_label.clone().unwrap_or_default()),
        codename: Set(p.codename.clone()),
    });
    let unique = [permission::Column::AppLabel, permission::Column::Codename];
    let new = insert_batches::<permission::Entity>(txn, rows, &unique, progress).await?;
    summary.permissions = Count::of(plan.permissions.len(), new);
    let here: HashMap<(String, String), i64> =
        permission::Entity::find().all(txn).await?.into_iter().map(|p| ((p.app_label, p.codename), p.id)).collect();
    Ok(plan
        .permissions
        .iter()
        .filter_map(|p| Some((p.id, *here.get(&(p.app_label.clone()?, p.codename.clone()))?)))
        .collect())
}

/// The users as written: Django id → id here, and id here → security stamp.
pub(super) struct Written {
    pub(super) ids: HashMap<i64, i64>,
    stamps: HashMap<i64, String>,
}

/// Inserts new users (with their Django id when it is free here) and brings users already
/// here up to date.
pub(super) async fn users(
    txn: &DatabaseTransaction,
    plan: &Plan,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<Written, ImportError> {
    progress.phase("users".into());
    let mut with_id = Vec::new();
    let mut without_id = Vec::new();
    for (u, row) in &plan.users {
        match row {
            UserRow::Here(update) => {
                if let Some(want) = update {
                    user::Entity::update(update_of(want)).exec(txn).await?;
                    summary.users.updated += 1;
                    summary.updated_users.push((want.id, want.username.clone()));
                }
                summary.users.present += 1;
                progress.add(1);
            }
            UserRow::New { keep_id: true } => with_id.push(new_user(u, true)),
            UserRow::New { keep_id: false } => without_id.push(new_user(u, false)),
        }
    }
    for rows in [with_id, without_id] {
        // No conflict clause: a username taken since the check must fail the import, not
        // be matched to someone else.
        summary.users.new += insert_batches::<user::Entity>(txn, rows, &[], progress).await?;
    }
    if txn.get_database_backend() == DbBackend::Postgres && summary.users.new > 0 {
        // Explicit ids do not move the sequence: the next registration must not collide.
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT setval(pg_get_serial_sequence('auth_user', 'id'), (SELECT MAX(id) FROM auth_user))",
        ))
        .await?;
    }
    Ok(written(txn, plan).await?)
}

fn new_user(u: &source::User, keep_id: bool) -> user::ActiveModel {
    user::ActiveModel {
        id: if keep_id { Set(u.id) } else { NotSet },
        username: Set(u.username.clone()),
        username_key: Set(user::username_key(&u.username)),
        password: Set(u.password.clone()),
        email: Set(u.email.clone()),
        first_name: Set(u.first_name.clone()),
        last_name: Set(u.last_name.clone()),
        is_active: Set(u.is_active),
        is_staff: Set(u.is_staff),
        is_superuser: Set(u.is_superuser),
        last_login: Set(u.last_login),
        date_joined: Set(u.date_joined),
        // Only a user under its Django id may accept simplejwt's stamp-less tokens, whose
        // user_id claim is that id.
        security_stamp: Set(users::imported_security_stamp(keep_id)),
        // Django's auth has no such flag (allauth keeps its own table): not verified here.
        email_verified: Set(false),
    }
}

/// The update to a user here that the plan brought in line with Django: every column
/// Django has, whether or not it changed.
fn update_of(want: &user::Model) -> user::ActiveModel {
    let mut active = want.clone().into_active_model();
    for column in [
        user::Column::Password,
        user::Column::Email,
        user::Column::FirstName,
        user::Column::LastName,
        user::Column::IsActive,
        user::Column::IsStaff,
        user::Column::IsSuperuser,
        user::Column::LastLogin,
        user::Column::DateJoined,
        user::Column::SecurityStamp,
        user::Column::EmailVerified,
    ] {
        active.reset(column);
    }
    active
}

async fn written(txn: &DatabaseTransaction, plan: &Plan) -> Result<Written, DbErr> {
    let here = user::Entity::find().all(txn).await?;
    let stamps = here.iter().map(|u| (u.id, u.security_stamp.clone())).collect();
    let by_key: HashMap<String, i64> = here.into_iter().map(|u| (u.username_key, u.id)).collect();
    let ids =
        plan.users.iter().filter_map(|(u, _)| Some((u.id, *by_key.get(&user::username_key(&u.username))?))).collect();
    Ok(Written { ids, stamps })
}

/// Group memberships and permission grants: the three join tables, in the ids here.
pub(super) async fn joins(
    txn: &DatabaseTransaction,
    plan: &Plan,
    users: &Written,
    (groups, permissions): (&HashMap<i64, i64>, &HashMap<i64, i64>),
    summary: &mut Summary,
    progress: &Progress,
) -> Result<(), ImportError> {
    use perm::{group_permissions as gp, user_groups as ug, user_permissions as up};
    progress.phase("memberships and permission grants".into());
    let mut joins = Count::default();
    let pairs = here(&plan.user_groups, &users.ids, groups);
    let columns = [ug::Column::UserId, ug::Column::GroupId];
    joins.add(insert_pairs::<ug::Entity>(txn, &pairs, columns, progress).await?);
    let pairs = here(&plan.user_permissions, &users.ids, permissions);
    let columns = [up::Column::UserId, up::Column::PermissionId];
    joins.add(insert_pairs::<up::Entity>(txn, &pairs, columns, progress).await?);
    let pairs = here(&plan.group_permissions, groups, permissions);
    let columns = [gp::Column::GroupId, gp::Column::PermissionId];
    joins.add(insert_pairs::<gp::Entity>(txn, &pairs, columns, progress).await?);
    summary.joins = joins;
    Ok(())
}

/// Join rows in Django's ids → in the ids here (those whose two sides were both written).
fn here(pairs: &[(i64, i64)], left: &HashMap<i64, i64>, right: &HashMap<i64, i64>) -> Vec<(i64, i64)> {
    pairs.iter().filter_map(|&(l, r)| Some((*left.get(&l)?, *right.get(&r)?))).collect()
}

/// A join table's rows, (left id, right id) here, into its `[left, right]` columns.
async fn insert_pairs<E>(
    txn: &DatabaseTransaction,
    pairs: &[(i64, i64)],
    [left, right]: [E::Column; 2],
    progress: &Progress,
) -> Result<Count, DbErr>
where
    E: EntityTrait,
    E::ActiveModel: Send,
{
    let rows = pairs.iter().map(|&(l, r)| {
        let mut row = E::ActiveModel::default();
        row.set(left, l.into());
        row.set(right, r.into());
        row
    });
    let new = insert_batches::<E>(txn, rows, &[left, right], progress).await?;
    Ok(Count::of(pairs.len(), new))
}

pub(super) async fn tokens(
    txn: &DatabaseTransaction,
    plan: &Plan,
    users: &Written,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<(), ImportError> {
    progress.phase("tokens".into());
    let rows = plan.tokens.iter().filter_map(|t| {
        Some(token::ActiveModel {
            id: NotSet,
            key_digest: Set(crypto::digest(&t.key).to_vec()),
            user_id: Set(*users.ids.get(&t.user_id)?),
            name: Set("Django".into()),
            created_at: Set(t.created),
            last_used: Set(None),
            expires_at: Set(None),
            // Imported credentials were obtained in Django, with a password as far as we know.
            aal: Set(1),
            aal_at: Set(None),
        })
    });
    let new = insert_batches::<token::Entity>(txn, rows, &[token::Column::KeyDigest], progress).await?;
    summary.tokens = Count::of(plan.tokens.len(), new);
    Ok(())
}

pub(super) async fn sessions(
    txn: &DatabaseTransaction,
    plan: &Plan,
    users: &Written,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<(), ImportError> {
    if plan.sessions.is_empty() {
        return Ok(());
    }
    progress.phase("sessions".into());
    let now = Utc::now();
    let rows = plan.sessions.iter().filter_map(|s| {
        let user_id = *users.ids.get(&s.user_id)?;
        Some(session::ActiveModel {
            id: NotSet,
            key_digest: Set(crypto::digest(&s.key).to_vec()),
            public_id: Set(crypto::random_hex(16)),
            user_id: Set(user_id),
            auth_stamp: Set(users.stamps.get(&user_id)?.clone()),
            data: Set(s.data.clone()),
            version: Set(0),
            created_at: Set(now),
            last_seen: Set(now),
            expires_at: Set(s.expires_at),
            ip: Set(None),
            user_agent: Set(None),
            aal: Set(1),
            aal_at: Set(None),
        })
    });
    let new = insert_batches::<session::Entity>(txn, rows, &[session::Column::KeyDigest], progress).await?;
    summary.sessions = Count::of(plan.sessions.len(), new);
    Ok(())
}
