//! Logging in: the one password check behind `/login/`, `/api-token-auth/`, `/api/token/`
//! and Basic authentication, and what each issues after it. For a user with a second
//! factor, a right password issues nothing yet: it opens a pending login (`challenge`) that
//! `POST /mfa/verify/` completes with the same credential, at assurance level 2.
use serde_json::json;

use super::{Accounts, LoginError, WithDevice};
use crate::{
    events::{EventContext, EventKind},
    service::{
        ServiceError,
        identity::{Aal, Identity, Origin},
        jwt::Pair,
        mfa::records,
        sessions, tokens,
        users::{self, Checked},
    },
    store::user,
    throttle::Bucket,
};

/// A right password's answer: the credential, or a pending login waiting for its code.
#[derive(Debug)]
pub enum Login<T> {
    Done(WithDevice<T>),
    SecondFactor(Pending),
}

/// A pending login: the ephemeral token to send to `POST /mfa/verify/` with a code.
#[derive(Debug, Clone)]
pub struct Pending {
    pub ephemeral_token: String,
}

/// What completing a login issues, as the endpoint that started it would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Session,
    Token,
    Jwt,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Token => "token",
            Self::Jwt => "jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Session, Self::Token, Self::Jwt].into_iter().find(|p| p.as_str() == s)
    }
}

/// A right password, and the device cookie id its attempt was counted under, if any.
pub(super) struct Passed {
    pub user: user::Model,
    pub device: Option<String>,
}

impl Accounts {
    /// Django's `authenticate()`, hardened (see `users::check_password`): one answer and one
    /// timing for wrong password, unknown and inactive user; failures throttled per client IP
    /// and per username — or, for a client holding a device cookie of that user, per device
    /// (`service::devices`). A refusal is a security event. Under `account.email_verification
    /// = "mandatory"`, a right password of an unverified user is refused too (`Unverified`).
    pub(super) async fn password_step(
        &self,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<Passed, LoginError> {
        let device = origin.device.as_ref().and_then(|cookie| self.devices.verify(cookie.expose(), username));
        let bucket = device.map_or(Bucket::Username(username), Bucket::Device);
        match self.check_password(bucket, username, password, origin).await? {
            // After the password check, so only the password's holder learns it (no enumeration).
            Checked::Valid(user) if self.unverified(&user) => {
                self.refused(&user, "email_not_verified", origin).await;
                Err(LoginError::Unverified)
            }
            Checked::Valid(user) => Ok(Passed { user: *user, device: device.map(str::to_owned) }),
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

    async fn refused(&self, user: &user::Model, reason: &str, origin: &Origin) {
        let ctx = origin.event(Some(user), None).with_detail(json!({ "reason": reason }));
        self.emit_with(EventKind::LoginFailed, ctx).await;
    }

    /// Basic authentication: the password on every request, so no device cookie, and no
    /// room for a second factor — users who have one are refused (after the password check).
    pub async fn authenticate_basic(
        &self,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<user::Model, LoginError> {
        let passed = self.password_step(username, password, origin).await?;
        if records::active(&self.db, passed.user.id).await.map_err(ServiceError::from)? {
            self.refused(&passed.user, "second_factor_required", origin).await;
            return Err(LoginError::SecondFactorRequired);
        }
        Ok(passed.user)
    }

    /// The device cookie to hand out after a complete login: one for this user, unless the
    /// client presented a valid one.
    pub(super) fn new_device(&self, passed: &Passed) -> Option<String> {
        passed.device.is_none().then(|| self.devices.issue(&passed.user.username))
    }

    /// `POST /login/`: checks the password and opens a session; returns the new cookie value.
    pub async fn log_in(
        &self,
        username: &str,
        password: &str,
        presented: Option<&Identity>,
        origin: &Origin,
    ) -> Result<Login<String>, LoginError> {
        let passed = self.password_step(username, password, origin).await?;
        if let Some(pending) = self.ask_second_factor(&passed, Purpose::Session, "", origin).await? {
            return Ok(Login::SecondFactor(pending));
        }
        let key = self.open_session(&passed.user, presented, Aal::ONE, origin).await?;
        Ok(Login::Done(WithDevice { value: key, device: self.new_device(&passed) }))
    }

    /// A session for `user` after a complete login. A session already presented is never
    /// kept as it was (fixation): the same user's gets a new key (Django's `cycle_key`, data
    /// kept) at this login's level, another user's is ended.
    pub(super) async fn open_session(
        &self,
        user: &user::Model,
        presented: Option<&Identity>,
        aal: Aal,
        origin: &Origin,
    ) -> Result<String, ServiceError> {
        let key = match presented.and_then(|i| i.session().map(|s| (i, s))) {
            Some((identity, session)) if identity.user.id == user.id => {
                sessions::cycle_key(&self.db, session.id, Some(&user.security_stamp), self.session_age, Some(aal))
                    .await?
            }
            other => {
                if let Some((previous, session)) = other {
                    sessions::delete(&self.db, session.id).await?;
                    let credential = Some(session.public_id.clone());
                    self.emit(EventKind::SessionRevoked, origin, Some(&previous.user), credential).await;
                }
                let key = sessions::create_with(&self.db, user, origin, self.session_age, aal).await?.0;
                self.trim_sessions(user, origin).await?;
                key
            }
        };
        users::record_login(&self.db, user.id).await?;
        self.emit(EventKind::LoginSucceeded, origin, Some(user), None).await;
        Ok(key)
    }

    /// `POST /api-token-auth/`: checks the password and issues a new token named `name`.
    pub async fn obtain_token(
        &self,
        username: &str,
        password: &str,
        name: &str,
        origin: &Origin,
    ) -> Result<Login<String>, LoginError> {
        let passed = self.password_step(username, password, origin).await?;
        if let Some(pending) = self.ask_second_factor(&passed, Purpose::Token, name, origin).await? {
            return Ok(Login::SecondFactor(pending));
        }
        let key = self.create_token_with(&passed.user, name, Aal::ONE, origin).await?;
        Ok(Login::Done(WithDevice { value: key, device: self.new_device(&passed) }))
    }

    /// A new token for `user` (`drf_create_token`); the key, shown once.
    pub async fn create_token(&self, user: &user::Model, name: &str, origin: &Origin) -> Result<String, ServiceError> {
        self.create_token_with(user, name, Aal::ONE, origin).await
    }

    /// `POST /tokens/`: a new token for the caller, at the caller's own level. A sensitive
    /// action: a long-lived credential from a short-lived one.
    pub async fn create_token_for(
        &self,
        identity: &Identity,
        name: &str,
        origin: &Origin,
    ) -> Result<String, ServiceError> {
        self.require_step_up(identity).await?;
        self.create_token_with(&identity.user, name, identity.aal, origin).await
    }

    pub(super) async fn create_token_with(
        &self,
        user: &user::Model,
        name: &str,
        aal: Aal,
        origin: &Origin,
    ) -> Result<String, ServiceError> {
        let (key, token) = tokens::create_with(&self.db, user.id, name, self.token_ttl, aal).await?;
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
    pub async fn obtain_jwt(&self, username: &str, password: &str, origin: &Origin) -> Result<Login<Pair>, LoginError> {
        let passed = self.password_step(username, password, origin).await?;
        if let Some(pending) = self.ask_second_factor(&passed, Purpose::Jwt, "", origin).await? {
            return Ok(Login::SecondFactor(pending));
        }
        let pair = self.issue_jwt(&passed.user, Aal::ONE, origin).await?;
        Ok(Login::Done(WithDevice { value: pair, device: self.new_device(&passed) }))
    }

    pub(super) async fn issue_jwt(&self, user: &user::Model, aal: Aal, origin: &Origin) -> Result<Pair, ServiceError> {
        let pair = self.jwt.obtain(&self.db, user, aal).await?;
        self.emit(EventKind::JwtIssued, origin, Some(user), Some(pair.refresh_jti.clone())).await;
        Ok(pair)
    }
}
