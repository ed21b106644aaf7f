//! Logging in: the one password check behind `/login/`, `/api-token-auth/`, `/api/token/`
//! and Basic authentication, and what each issues after it.
use serde_json::json;

use super::{Accounts, LoginError, WithDevice};
use crate::{
    events::{EventContext, EventKind},
    service::{
        ServiceError,
        identity::{Identity, Origin},
        jwt::Pair,
        sessions, tokens,
        users::{self, Checked},
    },
    store::user,
    throttle::Bucket,
};

impl Accounts {
    /// Django's `authenticate()`, hardened (see `users::check_password`): one answer and one
    /// timing for wrong password, unknown and inactive user; failures throttled per client IP
    /// and per username — or, for a client holding a device cookie of that user, per device
    /// (`service::devices`). A refusal is a security event. Under `account.email_verification
    /// = "mandatory"`, a right password of an unverified user is refused too (`Unverified`).
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<WithDevice<user::Model>, LoginError> {
        let device = origin.device.as_ref().and_then(|cookie| self.devices.verify(cookie.expose(), username));
        let bucket = device.map_or(Bucket::Username(username), Bucket::Device);
        match self.check_password(bucket, username, password, origin).await? {
            // After the password check, so only the password's holder learns it (no enumeration).
            Checked::Valid(user) if self.unverified(&user) => {
                let ctx = origin.event(Some(&user), None).with_detail(json!({"reason": "email_not_verified"}));
                self.emit_with(EventKind::LoginFailed, ctx).await;
                Err(LoginError::Unverified)
            }
            Checked::Valid(user) => {
                let device = device.is_none().then(|| self.devices.issue(username));
                Ok(WithDevice { value: *user, device })
            }
            Checked::Invalid { known } => {
                let ctx = match known {
                    true => EventContext { username: Some(username.to_owned()), ..origin.event(None, None) },
                    false => origin.event(None, None).with_detail(json!({"username_known": false})),
                };
                self.emit_with(EventKind::LoginFailed, ctx).await;
                Err(LoginError::Invalid)
            }
        }
    }

    /// `POST /login/`: checks the password and opens a session; returns the new cookie value.
    /// A session already presented is never kept as it was (fixation): the same user's gets
    /// a new key (Django's `cycle_key`, data kept), another user's is ended.
    pub async fn log_in(
        &self,
        username: &str,
        password: &str,
        presented: Option<&Identity>,
        origin: &Origin,
    ) -> Result<WithDevice<String>, LoginError> {
        let WithDevice { value: user, device } = self.authenticate(username, password, origin).await?;
        let key = match presented.and_then(|i| i.session().map(|s| (i, s))) {
            Some((identity, session)) if identity.user.id == user.id => {
                sessions::cycle_key(&self.db, session.id, Some(&user.security_stamp), self.session_age)
                    .await
                    .map_err(ServiceError::from)?
            }
            other => {
                if let Some((previous, session)) = other {
                    sessions::delete(&self.db, session.id).await.map_err(ServiceError::from)?;
                    let credential = Some(session.public_id.clone());
                    self.emit(EventKind::SessionRevoked, origin, Some(&previous.user), credential).await;
                }
                let key =
                    sessions::create(&self.db, &user, origin, self.session_age).await.map_err(ServiceError::from)?.0;
                self.trim_sessions(&user, origin).await?;
                key
            }
        };
        users::record_login(&self.db, user.id).await?;
        self.emit(EventKind::LoginSucceeded, origin, Some(&user), None).await;
        Ok(WithDevice { value: key, device })
    }

    /// `POST /api-token-auth/`: checks the password and issues a new token named `name`.
    pub async fn obtain_token(
        &self,
        username: &str,
        password: &str,
        name: &str,
        origin: &Origin,
    ) -> Result<WithDevice<String>, LoginError> {
        let WithDevice { value: user, device } = self.authenticate(username, password, origin).await?;
        Ok(WithDevice { value: self.create_token(&user, name, origin).await?, device })
    }

    /// A new token for `user` (after a login, or `drf_create_token`); the key, shown once.
    pub async fn create_token(&self, user: &user::Model, name: &str, origin: &Origin) -> Result<String, ServiceError> {
        let (key, token) = tokens::create(&self.db, user.id, name, self.token_ttl).await?;
        self.emit(EventKind::TokenCreated, origin, Some(user), Some(token.id.to_string())).await;
        for old in tokens::trim_for_user(&self.db, user.id, self.max_tokens).await? {
            let ctx = origin.event(Some(user), Some(old.id.to_string())).with_detail(json!({"reason": "limit"}));
            self.emit_with(EventKind::TokenRevoked, ctx).await;
        }
        Ok(key)
    }

    /// `session.max_per_user`: the least recently used sessions beyond it end.
    async fn trim_sessions(&self, user: &user::Model, origin: &Origin) -> Result<(), ServiceError> {
        for old in sessions::trim_for_user(&self.db, user.id, self.max_sessions).await? {
            let ctx = origin.event(Some(user), Some(old.public_id)).with_detail(json!({"reason": "limit"}));
            self.emit_with(EventKind::SessionRevoked, ctx).await;
        }
        Ok(())
    }

    /// `POST /api/token/`: checks the password and issues a JWT pair in a new family.
    pub async fn obtain_jwt(
        &self,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<WithDevice<Pair>, LoginError> {
        let WithDevice { value: user, device } = self.authenticate(username, password, origin).await?;
        let pair = self.jwt.obtain(&self.db, &user).await.map_err(ServiceError::from)?;
        self.emit(EventKind::JwtIssued, origin, Some(&user), Some(pair.refresh_jti.clone())).await;
        Ok(WithDevice { value: pair, device })
    }
}
