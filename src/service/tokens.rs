//! Opaque API tokens: DRF's format (40 lowercase hex characters from the OS CSPRNG), many
//! per user (one per device), stored only as a SHA-256 digest.
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};

use super::identity::Aal;
use crate::{
    crypto,
    store::{
        kept::{KeptSql, by_digest_with_user},
        token, user,
    },
};

/// Generates a key as DRF's `Token.generate_key` does (`binascii.hexlify(os.urandom(20))`).
pub fn new_key() -> String {
    crypto::random_hex(20)
}

/// DRF keys are 40 lowercase hex characters; anything else cannot be a token and is not
/// looked up.
pub fn plausible_key(key: &str) -> bool {
    key.len() == 40 && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Finds a live token and its user in one indexed query, and records its use (at most
/// once a minute per token, so a busy client does not write on every request). `None` for
/// unknown, revoked and expired keys alike (DRF's one "Invalid token.").
pub async fn authenticate(
    db: &impl ConnectionTrait,
    digest: &[u8; 32],
) -> Result<Option<(token::Model, user::Model)>, DbErr> {
    static SQL: KeptSql = KeptSql::new();
    let by_digest = |digest: Vec<u8>| token::Entity::find().filter(token::Column::KeyDigest.eq(digest));
    let Some((token, user)) = by_digest_with_user(db, &SQL, by_digest, digest).await? else { return Ok(None) };
    let now = Utc::now();
    if token.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    if token.last_used.is_none_or(|at| now - at >= Duration::seconds(60)) {
        touch(db, token.id).await?;
    }
    Ok(Some((token, user)))
}

async fn touch(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    token::Entity::update_many()
        .col_expr(token::Column::LastUsed, Expr::value(Utc::now()))
        .filter(token::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Issues a token after a password alone; the key is returned once and never stored.
/// `ttl_secs` 0 = no expiry.
pub async fn create(
    db: &impl ConnectionTrait,
    user_id: i64,
    name: &str,
    ttl_secs: u64,
) -> Result<(String, token::Model), DbErr> {
    create_with_key(db, user_id, name, ttl_secs, &new_key(), Aal::ONE).await
}

/// Issues a token at assurance level `aal`.
pub async fn create_with(
    db: &impl ConnectionTrait,
    user_id: i64,
    name: &str,
    ttl_secs: u64,
    aal: Aal,
) -> Result<(String, token::Model), DbErr> {
    create_with_key(db, user_id, name, ttl_secs, &new_key(), aal).await
}

/// Stores a given key (an imported DRF token keeps working as it was).
pub async fn create_with_key(
    db: &impl ConnectionTrait,
    user_id: i64,
    name: &str,
    ttl_secs: u64,
    key: &str,
    aal: Aal,
) -> Result<(String, token::Model), DbErr> {
    let now = Utc::now();
    let expires_at =
        (ttl_secs > 0).then(|| now + Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1000)));
    let row = token::ActiveModel {
        key_digest: Set(crypto::digest(key).to_vec()),
        user_id: Set(user_id),
        name: Set(name.chars().take(100).collect()),
        created_at: Set(now),
        last_used: Set(None),
        expires_at: Set(expires_at),
        aal: Set(aal.level()),
        aal_at: Set(aal.at()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((key.to_owned(), row))
}

fn of_user(user_id: i64) -> sea_orm::Select<token::Entity> {
    token::Entity::find()
        .filter(token::Column::UserId.eq(user_id))
        .order_by_desc(token::Column::CreatedAt)
        .order_by_desc(token::Column::Id)
}

pub async fn list_for_user(db: &impl ConnectionTrait, user_id: i64) -> Result<Vec<token::Model>, DbErr> {
    of_user(user_id).all(db).await
}

/// One page (from 0) of the user's tokens, newest first, and how many there are.
pub async fn page_for_user(
    db: &impl ConnectionTrait,
    user_id: i64,
    page: u64,
    size: u64,
) -> Result<(Vec<token::Model>, u64), DbErr> {
    let pages = of_user(user_id).paginate(db, size);
    Ok((pages.fetch_page(page).await?, pages.num_items().await?))
}

/// Revokes the user's oldest tokens beyond the `keep` newest; returns them.
pub async fn trim_for_user(db: &impl ConnectionTrait, user_id: i64, keep: u64) -> Result<Vec<token::Model>, DbErr> {
    // SQLite takes an OFFSET only after a LIMIT.
    let extra = of_user(user_id).offset(keep).limit(i64::MAX as u64).all(db).await?;
    if !extra.is_empty() {
        let ids: Vec<i64> = extra.iter().map(|t| t.id).collect();
        token::Entity::delete_many().filter(token::Column::Id.is_in(ids)).exec(db).await?;
    }
    Ok(extra)
}

/// A step-up: the token counts as level 2 from `at`.
pub async fn raise(db: &impl ConnectionTrait, id: i64, at: chrono::DateTime<Utc>) -> Result<(), DbErr> {
    token::Entity::update_many()
        .col_expr(token::Column::Aal, Expr::value(2i16))
        .col_expr(token::Column::AalAt, Expr::value(at))
        .filter(token::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Revokes one token; `false` when it is not the user's or not there.
pub async fn delete(db: &impl ConnectionTrait, user_id: i64, id: i64) -> Result<bool, DbErr> {
    let done = token::Entity::delete_many()
        .filter(token::Column::Id.eq(id))
        .filter(token::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Revokes every token of a user; returns how many.
pub async fn delete_for_user(db: &impl ConnectionTrait, user_id: i64) -> Result<u64, DbErr> {
    delete_for_user_except(db, user_id, None).await
}

/// Revokes every token of a user but `keep`; returns how many.
pub async fn delete_for_user_except(db: &impl ConnectionTrait, user_id: i64, keep: Option<i64>) -> Result<u64, DbErr> {
    let mut query = token::Entity::delete_many().filter(token::Column::UserId.eq(user_id));
    if let Some(keep) = keep {
        query = query.filter(token::Column::Id.ne(keep));
    }
    Ok(query.exec(db).await?.rows_affected)
}

/// Deletes expired tokens (`flushexpiredtokens`); returns how many.
pub async fn flush_expired(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let done = token::Entity::delete_many().filter(token::Column::ExpiresAt.lte(Utc::now())).exec(db).await?;
    Ok(done.rows_affected)
}
