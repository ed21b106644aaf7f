//! The second factor's rows. Every change that must happen once is one conditional
//! statement (a compare-and-swap): an accepted time step, a used recovery code, a completed
//! login — so two concurrent requests with the same code cannot both succeed.
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{Expr, OnConflict},
};

use super::recovery_digest;
use crate::{
    crypto,
    store::mfa::{challenge, recovery_code, totp},
};

/// The user's TOTP row, pending or confirmed.
pub async fn find(db: &impl ConnectionTrait, user_id: i64) -> Result<Option<totp::Model>, DbErr> {
    totp::Entity::find().filter(totp::Column::UserId.eq(user_id)).one(db).await
}

/// Whether the user has a confirmed TOTP: what makes a login ask for a code.
pub async fn active(db: &impl ConnectionTrait, user_id: i64) -> Result<bool, DbErr> {
    Ok(find(db, user_id).await?.is_some_and(|t| t.confirmed_at.is_some()))
}

/// Replaces a pending setup with a new sealed secret; `false` when a confirmed one (or a
/// concurrent setup) holds the row.
pub async fn save_pending(
    db: &impl ConnectionTrait,
    user_id: i64,
    sealed: Vec<u8>,
    key_id: &str,
) -> Result<bool, DbErr> {
    totp::Entity::delete_many()
        .filter(totp::Column::UserId.eq(user_id))
        .filter(totp::Column::ConfirmedAt.is_null())
        .exec(db)
        .await?;
    let row = totp::ActiveModel {
        user_id: Set(user_id),
        secret: Set(sealed),
        key_id: Set(key_id.to_owned()),
        confirmed_at: Set(None),
        last_step: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    let inserted = totp::Entity::insert(row)
        .on_conflict(OnConflict::column(totp::Column::UserId).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(inserted == 1)
}

/// Confirms a pending setup with the step its first code belonged to.
pub async fn confirm(db: &impl ConnectionTrait, id: i64, step: i64) -> Result<bool, DbErr> {
    let done = totp::Entity::update_many()
        .col_expr(totp::Column::ConfirmedAt, Expr::value(Utc::now()))
        .col_expr(totp::Column::LastStep, Expr::value(step))
        .filter(totp::Column::Id.eq(id))
        .filter(totp::Column::ConfirmedAt.is_null())
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Records `step` as used: `false` when it, or a later step, was used already (RFC 6238
/// §5.2: a code is accepted once).
pub async fn use_step(db: &impl ConnectionTrait, id: i64, step: i64) -> Result<bool, DbErr> {
    let done = totp::Entity::update_many()
        .col_expr(totp::Column::LastStep, Expr::value(step))
        .filter(totp::Column::Id.eq(id))
        .filter(totp::Column::ConfirmedAt.is_not_null())
        .filter(Condition::any().add(totp::Column::LastStep.is_null()).add(totp::Column::LastStep.lt(step)))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Removes the user's TOTP and recovery codes; returns whether there was a TOTP.
pub async fn delete(db: &impl ConnectionTrait, user_id: i64) -> Result<bool, DbErr> {
    recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(db).await?;
    let done = totp::Entity::delete_many().filter(totp::Column::UserId.eq(user_id)).exec(db).await?;
    Ok(done.rows_affected > 0)
}

/// TOTP rows sealed under another key than `key_id` (unreadable with the current one).
pub async fn sealed_elsewhere(db: &impl ConnectionTrait, key_id: &str) -> Result<u64, DbErr> {
    totp::Entity::find().filter(totp::Column::KeyId.ne(key_id)).count(db).await
}

/// The user's recovery codes become `codes` (the old ones stop working).
pub async fn replace_recovery_codes(db: &impl ConnectionTrait, user_id: i64, codes: &[String]) -> Result<(), DbErr> {
    recovery_code::Entity::delete_many().filter(recovery_code::Column::UserId.eq(user_id)).exec(db).await?;
    let now = Utc::now();
    let rows = codes.iter().filter_map(|code| match super::Code::parse(code) {
        Some(super::Code::Recovery(normalised)) => Some(recovery_code::ActiveModel {
            user_id: Set(user_id),
            digest: Set(recovery_digest(user_id, &normalised).to_vec()),
            used_at: Set(None),
            created_at: Set(now),
            ..Default::default()
        }),
        _ => None,
    });
    recovery_code::Entity::insert_many(rows).exec_without_returning(db).await.map(|_| ())
}

/// Spends one recovery code: `false` when it is not an unused code of this user.
pub async fn use_recovery_code(db: &impl ConnectionTrait, user_id: i64, normalised: &str) -> Result<bool, DbErr> {
    let done = recovery_code::Entity::update_many()
        .col_expr(recovery_code::Column::UsedAt, Expr::value(Utc::now()))
        .filter(recovery_code::Column::UserId.eq(user_id))
        .filter(recovery_code::Column::Digest.eq(recovery_digest(user_id, normalised).to_vec()))
        .filter(recovery_code::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

pub async fn recovery_codes_left(db: &impl ConnectionTrait, user_id: i64) -> Result<u64, DbErr> {
    recovery_code::Entity::find()
        .filter(recovery_code::Column::UserId.eq(user_id))
        .filter(recovery_code::Column::UsedAt.is_null())
        .count(db)
        .await
}

/// A login waiting for its second factor, as the password check left it.
#[derive(Debug, Clone)]
pub struct NewChallenge {
    pub user_id: i64,
    pub purpose: &'static str,
    pub token_name: String,
    pub device: Option<String>,
    pub issue_device: bool,
    pub auth_stamp: String,
}

/// Pending logins kept per user at most; older ones end (a password holder cannot pile up rows).
const MAX_PENDING: u64 = 10;

/// Records a pending login; returns its ephemeral token (shown once, stored as a digest).
pub async fn create_challenge(db: &impl ConnectionTrait, new: NewChallenge, ttl: Duration) -> Result<String, DbErr> {
    let token = crypto::random_hex(32);
    let now = Utc::now();
    challenge::ActiveModel {
        digest: Set(crypto::digest(&token).to_vec()),
        user_id: Set(new.user_id),
        purpose: Set(new.purpose.to_owned()),
        token_name: Set(new.token_name.chars().take(100).collect()),
        device: Set(new.device),
        issue_device: Set(new.issue_device),
        auth_stamp: Set(new.auth_stamp),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let extra: Vec<i64> = challenge::Entity::find()
        .filter(challenge::Column::UserId.eq(new.user_id))
        .order_by_desc(challenge::Column::Id)
        .offset(MAX_PENDING)
        .limit(i64::MAX as u64)
        .all(db)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    if !extra.is_empty() {
        challenge::Entity::delete_many().filter(challenge::Column::Id.is_in(extra)).exec(db).await?;
    }
    Ok(token)
}

/// The live pending login an ephemeral token names.
pub async fn find_challenge(
    db: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<challenge::Model>, DbErr> {
    challenge::Entity::find()
        .filter(challenge::Column::Digest.eq(crypto::digest(token).to_vec()))
        .filter(challenge::Column::ExpiresAt.gt(now))
        .one(db)
        .await
}

/// Ends a pending login as it completes: `false` when another request completed it first.
pub async fn consume_challenge(db: &impl ConnectionTrait, id: i64) -> Result<bool, DbErr> {
    Ok(challenge::Entity::delete_by_id(id).exec(db).await?.rows_affected == 1)
}

/// Deletes expired pending logins (`clearsessions`); returns how many.
pub async fn clear_expired_challenges(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let done = challenge::Entity::delete_many().filter(challenge::Column::ExpiresAt.lte(Utc::now())).exec(db).await?;
    Ok(done.rows_affected)
}
