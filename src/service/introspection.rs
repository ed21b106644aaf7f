//! Token introspection (RFC 7662) for the services behind portcullis: whether a DRF token,
//! an access JWT or a refresh JWT is live *now*. Every answer is read from the records the
//! authenticators check — the token's digest and expiry, the refresh token's record
//! (blacklisted, rotated away), the signature and `kid`, the user's `is_active` and security
//! stamp — and never from the credential cache, so no answer outlives a revocation.
//!
//! Anything that is not live (unknown, revoked, expired, malformed, a user gone or inactive,
//! a password changed since) is one answer, inactive: RFC 7662 says nothing more, so that
//! introspection cannot be used to learn why a stolen token failed.
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};

use super::{jwt, tokens};
use crate::{crypto, store::user};

/// Longer than any token portcullis issues (a JWT is a few hundred bytes): not parsed.
pub const MAX_TOKEN_LEN: usize = 8192;

/// A live token: whose it is and what it is.
#[derive(Debug, Clone)]
pub struct Active {
    pub user: user::Model,
    /// `"token"` (DRF), `"access"` or `"refresh"`.
    pub token_type: &'static str,
    /// Unix time it expires; `None` for a DRF token that never does (`token.ttl = 0`).
    pub exp: Option<i64>,
    pub iat: Option<i64>,
}

/// What `token` is, if it is live. RFC 7662's `token_type_hint` is not needed: a DRF key
/// and a JWT cannot be mistaken for each other, and a JWT says its own type.
pub async fn introspect(db: &impl ConnectionTrait, jwt: &jwt::Jwt, token: &str) -> Result<Option<Active>, DbErr> {
    if token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    if tokens::plausible_key(token) {
        return opaque(db, token).await;
    }
    if token.bytes().filter(|&b| b == b'.').count() == 2 {
        return json_web_token(db, jwt, token).await;
    }
    Ok(None)
}

/// A DRF token: as `TokenAuthentication` finds it (a use, as any other: `last_used` moves).
async fn opaque(db: &impl ConnectionTrait, key: &str) -> Result<Option<Active>, DbErr> {
    let Some((token, user)) = tokens::authenticate(db, &crypto::digest(key)).await? else { return Ok(None) };
    Ok(user.is_active.then(|| Active {
        exp: token.expires_at.as_ref().map(DateTime::<Utc>::timestamp),
        iat: Some(token.created_at.timestamp()),
        token_type: "token",
        user,
    }))
}

/// A JWT: signature, `kid`, expiry and type as the JWT authenticator checks them; its user
/// active with the same security stamp; a refresh token neither blacklisted nor rotated away.
async fn json_web_token(db: &impl ConnectionTrait, jwt: &jwt::Jwt, token: &str) -> Result<Option<Active>, DbErr> {
    let Ok(claims) = jwt.decode(token, None).await else { return Ok(None) };
    let token_type = match claims.token_type.as_str() {
        jwt::ACCESS => "access",
        jwt::REFRESH => "refresh",
        _ => return Ok(None),
    };
    let Some(user_id) = claims.user_id else { return Ok(None) };
    let Some(user) = user::Entity::find_by_id(user_id).one(db).await? else { return Ok(None) };
    if !user.is_active || !jwt::stamp_matches(claims.stamp.as_deref(), &user.security_stamp) {
        return Ok(None);
    }
    if token_type == "refresh" && jwt::spent(db, &claims.jti).await? {
        return Ok(None);
    }
    Ok(Some(Active { user, token_type, exp: Some(claims.exp), iat: claims.iat }))
}
