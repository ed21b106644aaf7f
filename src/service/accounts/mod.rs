//! The use cases: one method per account change, whichever door it comes through (an HTTP
//! handler, a CLI command, later a gateway). Each checks what it needs, changes the data,
//! and emits its own security event; the doors parse input, call one method and map the
//! result. Split by subject: [`login`], [`password`], [`logout`] (and other revocations),
//! [`admin`] (accounts, activation, permissions, groups).
mod admin;
mod login;
mod logout;
mod password;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use self::{logout::LogoutError, password::PasswordChangeError};
use super::{ServiceError, identity::Origin, jwt::Jwt, users};
use crate::{
    config::Settings,
    events::{EventContext, EventKind, Events},
    password::Passwords,
    store::user,
    throttle::LoginThrottle,
};

/// Everything the use cases work with. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    db: DatabaseConnection,
    passwords: Passwords,
    throttle: Arc<LoginThrottle>,
    events: Events,
    jwt: Arc<Jwt>,
    session_age: chrono::Duration,
    token_ttl: u64,
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
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Accounts {
    pub fn new(
        db: DatabaseConnection,
        passwords: Passwords,
        throttle: Arc<LoginThrottle>,
        events: Events,
        jwt: Arc<Jwt>,
        settings: &Settings,
    ) -> Self {
        Self {
            db,
            passwords,
            throttle,
            events,
            jwt,
            session_age: settings.session.age(),
            token_ttl: settings.token.ttl,
        }
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
