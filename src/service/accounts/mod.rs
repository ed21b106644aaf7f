//! The use cases: one method per account change, whichever door it comes through (an HTTP
//! handler, a CLI command, later a gateway). Each checks what it needs, changes the data,
//! and emits its own security event; the doors parse input, call one method and map the
//! result. Split by subject: [`login`], the second factor ([`mfa`] for enrolment and
//! step-up, [`challenge`] for the login step and the code check), [`password`], [`logout`]
//! (and other revocations), [`admin`] (accounts, activation, permissions, groups), [`keys`]
//! (the JWT signing key), and recovery by email: [`reset`], [`verification`], and what they
//! share, [`recovery`].
mod admin;
mod challenge;
mod keys;
mod login;
mod logout;
mod mfa;
mod password;
mod recovery;
mod reset;
mod verification;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use self::{
    challenge::Issued,
    keys::record_key_change,
    login::{Login, Pending, Purpose},
    logout::LogoutError,
    mfa::{MfaError, MfaStatus, SecondFactor, Stepped},
    password::PasswordChangeError,
    recovery::{INVALID_EMAIL, Recovery, RecoveryError, RecoveryParts},
    reset::{INVALID_VALUE, MISMATCH, ResetConfirmation},
};
use super::{
    ServiceError,
    devices::Devices,
    identity::Origin,
    jwt::Jwt,
    throttles::{Repeats, record_throttled},
    users::{self, Checked},
};
use crate::{
    config::Settings,
    events::{EventContext, EventKind, Events},
    password::Passwords,
    store::user,
    throttle::{Bucket, LoginThrottle, Reservation},
};

fn unavailable(e: crate::throttle::Unavailable) -> ServiceError {
    ServiceError::Unavailable(e.to_string())
}

/// Everything the use cases work with. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    db: DatabaseConnection,
    passwords: Passwords,
    throttle: Arc<LoginThrottle>,
    /// Throttled logins already in the audit trail this window.
    repeats: Arc<Repeats>,
    devices: Arc<Devices>,
    events: Events,
    jwt: Arc<Jwt>,
    session_age: chrono::Duration,
    token_ttl: u64,
    /// `session.max_per_user`, `token.max_per_user`.
    max_sessions: u64,
    max_tokens: u64,
    /// Password reset and email verification.
    mail: Arc<Recovery>,
    /// The second factor's settings and key.
    mfa: Arc<SecondFactor>,
}

/// The collaborators the use cases need, built at start-up.
pub struct Parts {
    pub db: DatabaseConnection,
    pub passwords: Passwords,
    pub throttle: Arc<LoginThrottle>,
    pub devices: Devices,
    pub events: Events,
    pub jwt: Arc<Jwt>,
    pub mail: RecoveryParts,
    /// The key sealing TOTP secrets, if one is configured.
    pub mfa_key: Option<crate::service::mfa::key::MfaKey>,
}

/// A successful password check's answer, and the device cookie to give the client when it
/// did not present a valid one for this user (`service::devices`).
#[derive(Debug)]
pub struct WithDevice<T> {
    pub value: T,
    pub device: Option<String>,
}

/// Why a username and password did not log anyone in.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong password, unknown user or inactive user: one answer for all three.
    #[error("invalid credentials")]
    Invalid,
    /// Too many failures for this username or client; retry after this many seconds.
    #[error("throttled for {0} seconds")]
    Throttled(u64),
    /// The password was right, but `account.email_verification = "mandatory"` and the
    /// user's email is not verified (dj-rest-auth's "E-mail is not verified.").
    #[error("email not verified")]
    Unverified,
    /// The password was right, but the user has a second factor and the door (Basic
    /// authentication) cannot ask for it.
    #[error("second factor required")]
    SecondFactorRequired,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Accounts {
    pub fn new(parts: Parts, settings: &Settings) -> Self {
        let window = parts.throttle.period().unwrap_or(std::time::Duration::from_secs(60));
        Self {
            db: parts.db,
            passwords: parts.passwords,
            throttle: parts.throttle,
            repeats: Arc::new(Repeats::new(window)),
            devices: Arc::new(parts.devices),
            events: parts.events,
            jwt: parts.jwt,
            session_age: settings.session.age(),
            token_ttl: settings.token.ttl,
            max_sessions: settings.session.max_per_user,
            max_tokens: settings.token.max_per_user,
            mail: Arc::new(Recovery::new(parts.mail, settings)),
            mfa: Arc::new(SecondFactor::new(parts.mfa_key, &settings.mfa)),
        }
    }

    /// The one password check behind every door that takes a password. The attempt is
    /// counted in `bucket` and the client IP's *before* the password is checked (so a burst
    /// of concurrent guesses cannot overtake the count), and taken back when it was right.
    async fn check_password(
        &self,
        bucket: Bucket<'_>,
        username: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<Checked, LoginError> {
        let reservation = self.reserve(bucket, username, origin).await?.map_err(LoginError::Throttled)?;
        let checked = users::check_password(&self.db, &self.passwords, username, password).await?;
        if matches!(checked, Checked::Valid(_)) {
            self.give_back(reservation).await?;
        }
        Ok(checked)
    }

    /// Counts one attempt at a secret of `username`'s (a password or a second-factor code)
    /// in `bucket` and the client IP's, or says how long to wait.
    async fn reserve(
        &self,
        bucket: Bucket<'_>,
        username: &str,
        origin: &Origin,
    ) -> Result<Result<Reservation, u64>, ServiceError> {
        match self.throttle.reserve(bucket, origin.ip).await.map_err(unavailable)? {
            Ok(reservation) => Ok(Ok(reservation)),
            Err(full) => {
                let ctx = self.attempted(username, origin);
                record_throttled(&self.events, &self.repeats, &full.bucket, "login", full.wait, ctx).await;
                Ok(Err(full.wait))
            }
        }
    }

    /// The attempt was right: it is no failure.
    async fn give_back(&self, reservation: Reservation) -> Result<(), ServiceError> {
        self.throttle.give_back(reservation).await.map_err(unavailable)
    }

    /// The event context of a refused attempt at `username`: the name is kept only when
    /// such a user exists (a password typed into the username field must not be stored).
    async fn attempted(&self, username: &str, origin: &Origin) -> EventContext {
        let known = matches!(users::find_by_username(&self.db, username).await, Ok(Some(_)));
        EventContext { username: known.then(|| username.to_owned()), ..origin.event(None, None) }
    }

    /// The user with this exact username, or `NotFound` naming it.
    pub async fn user(&self, username: &str) -> Result<user::Model, ServiceError> {
        users::find_by_username(&self.db, username)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("user '{username}' does not exist")))
    }

    async fn emit(&self, kind: EventKind, origin: &Origin, user: Option<&user::Model>, credential: Option<String>) {
        self.events.emit(kind, origin.event(user, credential)).await;
    }

    async fn emit_with(&self, kind: EventKind, ctx: EventContext) {
        self.events.emit(kind, ctx).await;
    }
}
