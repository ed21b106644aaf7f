//! Ending credentials: log out, log out everywhere, revoke one session or token, and the
//! JWT refresh-token lifecycle (rotation with theft detection, blacklisting).
use serde_json::json;

use super::Accounts;
use crate::{
    events::{EventContext, EventKind},
    service::{
        ServiceError,
        identity::{Credential, Identity, Origin},
        jwt::{self, JwtError, Refreshed, TokenError},
        sessions, tokens, users,
    },
    store::user,
};

/// Why a logout could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    /// The refresh token to blacklist was refused (simplejwt's 401).
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Accounts {
    /// `POST /logout/`: blacklists the refresh token given, if any, and ends the session or
    /// token that made the request. Returns whether a session was ended (its cookie must go).
    pub async fn logout(
        &self,
        identity: Option<&Identity>,
        refresh: Option<&str>,
        origin: &Origin,
    ) -> Result<bool, LogoutError> {
        if let Some(refresh) = refresh {
            self.blacklist_jwt(refresh, origin).await?;
        }
        let Some(identity) = identity else { return Ok(false) };
        let ended_session = match &identity.credential {
            Credential::Session(session) => {
                sessions::delete(&self.db, session.id).await.map_err(ServiceError::from)?;
                true
            }
            Credential::Token { id, .. } => {
                tokens::delete(&self.db, identity.user.id, *id).await.map_err(ServiceError::from)?;
                false
            }
            Credential::Jwt { .. } | Credential::Basic => false,
        };
        self.emit(EventKind::LoggedOut, origin, Some(&identity.user), None).await;
        Ok(ended_session)
    }

    /// Every session, token, refresh and access JWT of the user ends (a new security stamp
    /// ends the access tokens no list could hold).
    pub async fn logout_everywhere(&self, user: &user::Model, origin: &Origin) -> Result<user::Model, ServiceError> {
        let user = users::rotate_stamp(&self.db, user.clone()).await?;
        sessions::delete_for_user(&self.db, user.id, None).await?;
        tokens::delete_for_user(&self.db, user.id).await?;
        jwt::blacklist_user(&self.db, user.id).await?;
        self.emit(EventKind::LoggedOutEverywhere, origin, Some(&user), None).await;
        Ok(user)
    }

    /// Ends one of the user's sessions by its public id; `None` when it is not theirs.
    /// Returns the session's row id.
    pub async fn revoke_session(
        &self,
        user: &user::Model,
        public_id: &str,
        origin: &Origin,
    ) -> Result<Option<i64>, ServiceError> {
        let Some(id) = sessions::delete_public(&self.db, user.id, public_id).await? else { return Ok(None) };
        self.emit(EventKind::SessionRevoked, origin, Some(user), Some(public_id.to_owned())).await;
        Ok(Some(id))
    }

    /// Revokes one of the user's tokens; `false` when it is not theirs.
    pub async fn revoke_token(&self, user: &user::Model, id: i64, origin: &Origin) -> Result<bool, ServiceError> {
        if !tokens::delete(&self.db, user.id, id).await? {
            return Ok(false);
        }
        self.emit(EventKind::TokenRevoked, origin, Some(user), Some(id.to_string())).await;
        Ok(true)
    }

    /// Revokes every token of the user (`drf_create_token -r`); returns how many.
    pub async fn revoke_tokens(&self, user: &user::Model, origin: &Origin) -> Result<u64, ServiceError> {
        let count = tokens::delete_for_user(&self.db, user.id).await?;
        if count > 0 {
            let ctx = origin.event(Some(user), None).with_detail(json!({"count": count}));
            self.emit_with(EventKind::TokenRevoked, ctx).await;
        }
        Ok(count)
    }

    /// `POST /api/token/refresh/`. A rotated-away token presented again revokes its family:
    /// that is recorded before the refusal goes back.
    pub async fn refresh_jwt(&self, token: &str, origin: &Origin) -> Result<Refreshed, JwtError> {
        match self.jwt.refresh(&self.db, token).await {
            Ok(done) => {
                if let Some(jti) = &done.rotated_to {
                    self.emit(EventKind::JwtRotated, origin, Some(&done.user), Some(jti.clone())).await;
                }
                Ok(done)
            }
            Err(JwtError::Refused(TokenError::Reused { user_id, family, revoked })) => {
                let detail = json!({"family": family, "revoked": revoked});
                let ctx = EventContext { user_id: Some(user_id), ..origin.event(None, None) };
                self.emit_with(EventKind::RefreshReuseDetected, ctx.with_detail(detail)).await;
                Err(JwtError::Refused(TokenError::Reused { user_id, family, revoked }))
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /api/token/blacklist/` (and logout with a refresh token).
    pub async fn blacklist_jwt(&self, token: &str, origin: &Origin) -> Result<(), JwtError> {
        let row = self.jwt.blacklist(&self.db, token).await?;
        let ctx = EventContext { user_id: Some(row.user_id), ..origin.event(None, Some(row.jti)) };
        self.emit_with(EventKind::JwtBlacklisted, ctx).await;
        Ok(())
    }
}
