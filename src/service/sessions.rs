//! Server-side sessions: only a digest of the cookie value is stored; a separate public id
//! is what APIs show. Framework-free: cookies are the caller's business.
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};
use serde_json::{Map, Value};

use super::identity::{Aal, Origin};
use crate::{
    crypto,
    store::{
        kept::{KeptSql, by_digest_with_user},
        session, user,
    },
};

const KEY_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new cookie value: Django's format, 32 characters of [a-z0-9] (about 165 bits).
pub fn new_key() -> String {
    crypto::random_string(32, KEY_CHARS)
}

/// Whether a cookie value could be a key at all (Django refuses keys under 8 characters);
/// anything else is not looked up.
pub fn plausible_key(key: &str) -> bool {
    (8..=64).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The session with this key digest and its user, in one query.
pub async fn lookup(
    db: &impl ConnectionTrait,
    digest: &[u8; 32],
) -> Result<Option<(session::Model, user::Model)>, DbErr> {
    static SQL: KeptSql = KeptSql::new();
    let by_digest = |digest: Vec<u8>| session::Entity::find().filter(session::Column::KeyDigest.eq(digest));
    by_digest_with_user(db, &SQL, by_digest, digest).await
}

/// Opens a session for `account` after a password alone; returns the cookie value (shown
/// once) and the row.
pub async fn create(
    db: &impl ConnectionTrait,
    account: &user::Model,
    origin: &Origin,
    age: Duration,
) -> Result<(String, session::Model), DbErr> {
    create_with(db, account, origin, age, Aal::ONE).await
}

/// Opens a session at assurance level `aal`.
pub async fn create_with(
    db: &impl ConnectionTrait,
    account: &user::Model,
    origin: &Origin,
    age: Duration,
    aal: Aal,
) -> Result<(String, session::Model), DbErr> {
    let key = new_key();
    let now = Utc::now();
    let row = session::ActiveModel {
        key_digest: Set(crypto::digest(&key).to_vec()),
        public_id: Set(crypto::random_hex(16)),
        user_id: Set(account.id),
        auth_stamp: Set(account.security_stamp.clone()),
        data: Set("{}".into()),
        version: Set(0),
        created_at: Set(now),
        last_seen: Set(now),
        expires_at: Set(now + age),
        ip: Set(origin.ip.map(|ip| ip.to_string())),
        user_agent: Set(origin.user_agent.clone().map(|ua| truncate(ua, 512))),
        aal: Set(aal.level()),
        aal_at: Set(aal.at()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((key, row))
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Django's `cycle_key`: a new cookie value for the same session (data kept), optionally
/// under a new security stamp (`update_session_auth_hash`) or at the assurance level of a
/// new login. Returns the new cookie value.
pub async fn cycle_key(
    db: &impl ConnectionTrait,
    id: i64,
    stamp: Option<&str>,
    age: Duration,
    aal: Option<Aal>,
) -> Result<String, DbErr> {
    let key = new_key();
    let now = Utc::now();
    let mut update = session::Entity::update_many()
        .col_expr(session::Column::KeyDigest, Expr::value(crypto::digest(&key).to_vec()))
        .col_expr(session::Column::LastSeen, Expr::value(now))
        .col_expr(session::Column::ExpiresAt, Expr::value(now + age));
    if let Some(stamp) = stamp {
        update = update.col_expr(session::Column::AuthStamp, Expr::value(stamp.to_owned()));
    }
    if let Some(aal) = aal {
        update = update
            .col_expr(session::Column::Aal, Expr::value(aal.level()))
            .col_expr(session::Column::AalAt, Expr::value(aal.at()));
    }
    update.filter(session::Column::Id.eq(id)).exec(db).await?;
    Ok(key)
}

/// A step-up: the session counts as level 2 from `at`.
pub async fn raise(db: &impl ConnectionTrait, id: i64, at: DateTime<Utc>) -> Result<(), DbErr> {
    session::Entity::update_many()
        .col_expr(session::Column::Aal, Expr::value(2i16))
        .col_expr(session::Column::AalAt, Expr::value(at))
        .filter(session::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

pub async fn delete(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    session::Entity::delete_by_id(id).exec(db).await.map(|_| ())
}

/// Deletes every session of a user but `keep`; returns how many.
pub async fn delete_for_user(db: &impl ConnectionTrait, user_id: i64, keep: Option<i64>) -> Result<u64, DbErr> {
    let mut query = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
    if let Some(keep) = keep {
        query = query.filter(session::Column::Id.ne(keep));
    }
    Ok(query.exec(db).await?.rows_affected)
}

/// Deletes a user's session by public id; `false` when it is not theirs or not there.
pub async fn delete_public(db: &impl ConnectionTrait, user_id: i64, public_id: &str) -> Result<Option<i64>, DbErr> {
    let found = session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::PublicId.eq(public_id))
        .one(db)
        .await?;
    let Some(found) = found else { return Ok(None) };
    delete(db, found.id).await?;
    Ok(Some(found.id))
}

fn live_for_user(user_id: i64) -> sea_orm::Select<session::Entity> {
    session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::ExpiresAt.gt(Utc::now()))
}

/// The user's live sessions, newest first.
pub async fn list_for_user(db: &impl ConnectionTrait, user_id: i64) -> Result<Vec<session::Model>, DbErr> {
    live_for_user(user_id).order_by_desc(session::Column::CreatedAt).all(db).await
}

/// One page (from 0) of the user's live sessions, newest first, and how many there are.
pub async fn page_for_user(
    db: &impl ConnectionTrait,
    user_id: i64,
    page: u64,
    size: u64,
) -> Result<(Vec<session::Model>, u64), DbErr> {
    let pages = live_for_user(user_id).order_by_desc(session::Column::CreatedAt).paginate(db, size);
    Ok((pages.fetch_page(page).await?, pages.num_items().await?))
}

/// Ends the user's least recently used sessions beyond the `keep` most recent; returns them.
pub async fn trim_for_user(db: &impl ConnectionTrait, user_id: i64, keep: u64) -> Result<Vec<session::Model>, DbErr> {
    let extra = session::Entity::find()
        .filter(session::Column::UserId.eq(user_id))
        .order_by_desc(session::Column::LastSeen)
        .order_by_desc(session::Column::Id)
        .offset(keep)
        .limit(i64::MAX as u64)
        .all(db)
        .await?;
    if !extra.is_empty() {
        let ids: Vec<i64> = extra.iter().map(|s| s.id).collect();
        session::Entity::delete_many().filter(session::Column::Id.is_in(ids)).exec(db).await?;
    }
    Ok(extra)
}

/// Records activity: `last_seen`, and with sliding expiry a new `expires_at`. Callers
/// throttle how often this runs (see `should_touch`).
pub async fn touch(db: &impl ConnectionTrait, id: i64, extend: Option<Duration>) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut update = session::Entity::update_many().col_expr(session::Column::LastSeen, Expr::value(now));
    if let Some(age) = extend {
        update = update.col_expr(session::Column::ExpiresAt, Expr::value(now + age));
    }
    update.filter(session::Column::Id.eq(id)).exec(db).await.map(|_| ())
}

/// Whether a session seen at `last_seen` should be written again now: at most once a
/// minute, and for short cookie ages at least ten times per age, so sliding expiry
/// still slides when `cookie_age` is a few seconds.
pub fn should_touch(last_seen: DateTime<Utc>, age: Duration, now: DateTime<Utc>) -> bool {
    let interval = (age / 10).min(Duration::seconds(60));
    now - last_seen >= interval
}

/// Deletes expired sessions (`clearsessions`); returns how many.
pub async fn clear_expired(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let done = session::Entity::delete_many().filter(session::Column::ExpiresAt.lte(Utc::now())).exec(db).await?;
    Ok(done.rows_affected)
}

/// The session's data object.
pub async fn data(db: &impl ConnectionTrait, id: i64) -> Result<Option<Map<String, Value>>, DbErr> {
    let row = session::Entity::find_by_id(id).one(db).await?;
    Ok(row.map(|r| parse_data(&r.data)))
}

fn parse_data(raw: &str) -> Map<String, Value> {
    serde_json::from_str(raw).unwrap_or_default()
}

/// Why session data could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Db(#[from] DbErr),
    /// Other writers won every one of our compare-and-swap attempts.
    #[error("session data kept changing under concurrent writes")]
    Contended,
    /// The merged data would be larger than `session.max_data_bytes`.
    #[error("Session data is limited to {0} bytes.")]
    TooLarge(usize),
}

/// Merges `patch` into the session's data (`null` deletes a key) and returns the result.
/// Compare-and-swap on `version`, retried: two concurrent PATCHes of different keys both
/// survive, and a session deleted meanwhile is not brought back (`None`).
pub async fn merge_data(
    db: &impl ConnectionTrait,
    id: i64,
    patch: &Map<String, Value>,
    max_bytes: usize,
) -> Result<Option<Map<String, Value>>, DataError> {
    for _ in 0..50 {
        let Some(row) = session::Entity::find_by_id(id).one(db).await? else { return Ok(None) };
        let mut data = parse_data(&row.data);
        for (key, value) in patch {
            if value.is_null() {
                data.remove(key);
            } else {
                data.insert(key.clone(), value.clone());
            }
        }
        // A map with string keys always serialises.
        let encoded = Value::Object(data.clone()).to_string();
        if encoded.len() > max_bytes {
            return Err(DataError::TooLarge(max_bytes));
        }
        let done = session::Entity::update_many()
            .col_expr(session::Column::Data, Expr::value(encoded))
            .col_expr(session::Column::Version, Expr::value(row.version + 1))
            .filter(session::Column::Id.eq(id))
            .filter(session::Column::Version.eq(row.version))
            .exec(db)
            .await?;
        if done.rows_affected == 1 {
            return Ok(Some(data));
        }
    }
    Err(DataError::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_djangos_format() {
        let key = new_key();
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert!(plausible_key(&key));
        assert!(!plausible_key("short"));
        assert!(!plausible_key("has spaces in it!"));
    }

    #[test]
    fn touches_are_throttled_but_short_ages_still_slide() {
        let now = Utc::now();
        let two_weeks = Duration::seconds(1_209_600);
        assert!(!should_touch(now - Duration::seconds(30), two_weeks, now));
        assert!(should_touch(now - Duration::seconds(61), two_weeks, now));
        let five_secs = Duration::seconds(5);
        assert!(should_touch(now - Duration::milliseconds(600), five_secs, now));
        assert!(!should_touch(now - Duration::milliseconds(100), five_secs, now));
    }
}
