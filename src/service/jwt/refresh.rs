//! Refresh tokens' records: only the `jti` (with its user, family and times) is stored.
//! Rotation is a compare-and-swap on the record, and a rotated-away token presented again
//! revokes its whole family (theft detection).
use chrono::{TimeZone, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, OnConflict},
};

use super::{Claims, IssueError, Jwt, JwtError, Pair, REFRESH, TokenError, msg, new_jti, stamp_matches};
use crate::{
    crypto,
    service::identity::Aal,
    store::{
        jwt::{blacklisted, outstanding},
        user,
    },
};

/// What a refresh produced.
pub struct Refreshed {
    pub access: String,
    /// With rotation: the new refresh token.
    pub refresh: Option<String>,
    pub user: user::Model,
    /// With rotation: the `jti` of the new refresh token.
    pub rotated_to: Option<String>,
}

impl Jwt {
    /// `POST /api/token/`: a refresh token in a new family, and an access token, both at
    /// assurance level `aal` (refreshed access tokens keep the level of their refresh token).
    pub async fn obtain(&self, db: &impl ConnectionTrait, user: &user::Model, aal: Aal) -> Result<Pair, IssueError> {
        let (refresh, refresh_jti) = self.new_refresh(db, user, &crypto::random_hex(16), aal).await?;
        Ok(Pair { refresh, access: self.access_with(user, aal)?, refresh_jti })
    }

    async fn new_refresh(
        &self,
        db: &impl ConnectionTrait,
        user: &user::Model,
        family: &str,
        aal: Aal,
    ) -> Result<(String, String), IssueError> {
        let jti = new_jti();
        let lifetime = self.settings.refresh_token_lifetime;
        let token = self.encode(REFRESH, user, lifetime, &jti, aal)?;
        let now = Utc::now();
        outstanding::ActiveModel {
            jti: Set(jti.clone()),
            user_id: Set(user.id),
            family_id: Set(family.to_owned()),
            created_at: Set(now),
            expires_at: Set(now + chrono::Duration::seconds(i64::try_from(lifetime).unwrap_or(i64::MAX / 1000))),
            rotated_at: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await?;
        Ok((token, jti))
    }

    /// A valid refresh token: signed, unexpired, of type refresh, not blacklisted, its user
    /// active and its stamp current. Returns the claims, the user and its outstanding row.
    async fn check_refresh(
        &self,
        db: &impl ConnectionTrait,
        token: &str,
    ) -> Result<(Claims, user::Model, outstanding::Model), JwtError> {
        let claims = self.decode(token, Some(REFRESH)).await?;
        // The user first: a deleted user's rows are gone, and nothing may be recorded for them.
        let user = match claims.user_id {
            Some(id) => user::Entity::find_by_id(id).one(db).await?,
            None => None,
        };
        let user = user.filter(|u| u.is_active).ok_or(TokenError::NoActiveAccount)?;
        let (row, blacklisted) = self.outstanding_row(db, &claims).await?;
        // A rotated-away token goes on even if its rotation blacklisted it: presenting it
        // again is a reuse, and `refresh` must see it to revoke the family.
        if blacklisted && row.rotated_at.is_none() {
            return Err(TokenError::Token(msg::BLACKLISTED).into());
        }
        if !stamp_matches(claims.stamp.as_deref(), &user.security_stamp) {
            return Err(TokenError::PasswordChanged.into());
        }
        Ok((claims, user, row))
    }

    /// The refresh token's outstanding row, and whether it is blacklisted. A token signed by
    /// our key but never recorded (issued elsewhere, e.g. by simplejwt with the same key) is
    /// recorded now, so it can be rotated and blacklisted.
    async fn outstanding_row(
        &self,
        db: &impl ConnectionTrait,
        claims: &Claims,
    ) -> Result<(outstanding::Model, bool), JwtError> {
        let row = outstanding::Entity::find()
            .filter(outstanding::Column::Jti.eq(&claims.jti))
            .find_also_related(blacklisted::Entity)
            .one(db)
            .await?;
        match row {
            Some((row, blacklisted)) => Ok((row, blacklisted.is_some())),
            None => Ok((self.record_foreign(db, claims).await?, false)),
        }
    }

    async fn record_foreign(&self, db: &impl ConnectionTrait, claims: &Claims) -> Result<outstanding::Model, JwtError> {
        let user_id = claims.user_id.ok_or(TokenError::NoActiveAccount)?;
        let expires_at = Utc.timestamp_opt(claims.exp, 0).single().unwrap_or_else(Utc::now);
        let row = outstanding::ActiveModel {
            jti: Set(claims.jti.clone()),
            user_id: Set(user_id),
            family_id: Set(crypto::random_hex(16)),
            created_at: Set(Utc::now()),
            expires_at: Set(expires_at),
            rotated_at: Set(None),
            ..Default::default()
        };
        outstanding::Entity::insert(row)
            .on_conflict(OnConflict::column(outstanding::Column::Jti).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        outstanding::Entity::find()
            .filter(outstanding::Column::Jti.eq(&claims.jti))
            .one(db)
            .await?
            .ok_or_else(|| TokenError::NoActiveAccount.into())
    }

    /// `POST /api/token/refresh/`: a new access token, and with rotation a new refresh
    /// token. The rotation is a compare-and-swap on the old token's row: the loser of a
    /// race, and anyone replaying a rotated-away token, finds it taken, and the whole
    /// family is blacklisted (theft detection) — whatever `blacklist_after_rotation` and
    /// `rotate_refresh_tokens` now say.
    pub async fn refresh(&self, db: &impl ConnectionTrait, token: &str) -> Result<Refreshed, JwtError> {
        let (claims, user, row) = self.check_refresh(db, token).await?;
        if row.rotated_at.is_some() {
            return Err(reused(db, user.id, row.family_id).await);
        }
        let access = self.access_with(&user, claims.aal)?;
        if !self.rotates() {
            return Ok(Refreshed { access, refresh: None, user, rotated_to: None });
        }
        let won = outstanding::Entity::update_many()
            .col_expr(outstanding::Column::RotatedAt, Expr::value(Utc::now()))
            .filter(outstanding::Column::Id.eq(row.id))
            .filter(outstanding::Column::RotatedAt.is_null())
            .exec(db)
            .await?
            .rows_affected
            == 1;
        if !won {
            return Err(reused(db, user.id, row.family_id).await);
        }
        if self.settings.blacklist_after_rotation {
            blacklist_rows(db, &[row.id]).await?;
        }
        let (refresh, jti) = self.new_refresh(db, &user, &row.family_id, claims.aal).await?;
        Ok(Refreshed { access, refresh: Some(refresh), user, rotated_to: Some(jti) })
    }

    /// `POST /api/token/verify/`: any valid token; a blacklisted or rotated-away refresh
    /// token is refused whatever the settings.
    pub async fn verify(&self, db: &impl ConnectionTrait, token: &str) -> Result<(), JwtError> {
        let claims = self.decode(token, None).await?;
        if claims.token_type == REFRESH && spent(db, &claims.jti).await? {
            return Err(TokenError::Token(msg::BLACKLISTED).into());
        }
        Ok(())
    }

    /// `POST /api/token/blacklist/` and logout with `{"refresh": ...}`; returns the token's
    /// outstanding row (its user and `jti`).
    pub async fn blacklist(&self, db: &impl ConnectionTrait, token: &str) -> Result<outstanding::Model, JwtError> {
        let claims = self.decode(token, Some(REFRESH)).await?;
        let (row, blacklisted) = self.outstanding_row(db, &claims).await?;
        if blacklisted {
            return Err(TokenError::Token(msg::BLACKLISTED).into());
        }
        blacklist_rows(db, &[row.id]).await?;
        Ok(row)
    }
}

/// Whether a refresh token was blacklisted or rotated away. One never recorded (signed with
/// our key elsewhere, e.g. by simplejwt) is not.
pub async fn spent(db: &impl ConnectionTrait, jti: &str) -> Result<bool, DbErr> {
    let row = outstanding::Entity::find()
        .filter(outstanding::Column::Jti.eq(jti))
        .find_also_related(blacklisted::Entity)
        .one(db)
        .await?;
    Ok(row.is_some_and(|(r, blacklisted)| blacklisted.is_some() || r.rotated_at.is_some()))
}

/// Blacklists every outstanding refresh token of a user (`/logoutall/`).
pub async fn blacklist_user(db: &impl ConnectionTrait, user_id: i64) -> Result<(), DbErr> {
    let ids: Vec<i64> = outstanding::Entity::find()
        .filter(outstanding::Column::UserId.eq(user_id))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    blacklist_rows(db, &ids).await
}

/// A rotated-away token was presented: its whole family is blacklisted.
async fn reused(db: &impl ConnectionTrait, user_id: i64, family: String) -> JwtError {
    match revoke_family(db, &family).await {
        Ok(revoked) => TokenError::Reused { user_id, family, revoked }.into(),
        Err(e) => e.into(),
    }
}

/// Blacklists every token of a family; returns how many it has.
async fn revoke_family(db: &impl ConnectionTrait, family: &str) -> Result<usize, DbErr> {
    let ids: Vec<i64> = outstanding::Entity::find()
        .filter(outstanding::Column::FamilyId.eq(family))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    blacklist_rows(db, &ids).await?;
    Ok(ids.len())
}

async fn blacklist_rows(db: &impl ConnectionTrait, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let rows = ids.iter().map(|id| blacklisted::ActiveModel {
        token_id: Set(*id),
        blacklisted_at: Set(now),
        ..Default::default()
    });
    blacklisted::Entity::insert_many(rows)
        .on_conflict(OnConflict::column(blacklisted::Column::TokenId).do_nothing().to_owned())
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

/// Deletes expired outstanding tokens and their blacklist rows (`flushexpiredtokens`).
pub async fn flush_expired(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let done =
        outstanding::Entity::delete_many().filter(outstanding::Column::ExpiresAt.lte(Utc::now())).exec(db).await?;
    Ok(done.rows_affected)
}
