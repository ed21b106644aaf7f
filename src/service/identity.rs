//! Who is acting: an authenticated caller (the chain's answer), and where a change comes
//! from (an HTTP client or the command line). The authenticators produce identities; use
//! cases receive them.
use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, Utc};

pub use crate::config::AuthScheme as Method;
use crate::config::Secret;
use crate::{events::EventContext, store::user};

/// The session behind a request, as APIs may show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    pub id: i64,
    pub public_id: String,
    pub last_seen: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The user's security stamp when the session was opened (never shown by APIs).
    pub auth_stamp: String,
}

/// The credential that authenticated a request (public ids only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session(SessionRef),
    Token { id: i64, expires_at: Option<DateTime<Utc>> },
    Jwt { jti: String, exp: i64 },
    Basic,
}

/// How strongly a credential was obtained (NIST SP 800-63B's authenticator assurance
/// levels, as Ory Kratos names them): level 1 by a password, level 2 by a password and a
/// second factor, proven last at `at` (a step-up moves it on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aal {
    two_at: Option<DateTime<Utc>>,
}

impl Aal {
    /// A password alone.
    pub const ONE: Self = Self { two_at: None };

    /// A second factor proven at `at`.
    pub fn two(at: DateTime<Utc>) -> Self {
        Self { two_at: Some(at) }
    }

    /// From a stored level and time; a level 2 without a time counts as 1.
    pub fn from_parts(level: i16, at: Option<DateTime<Utc>>) -> Self {
        Self { two_at: at.filter(|_| level >= 2) }
    }

    pub fn level(self) -> i16 {
        if self.two_at.is_some() { 2 } else { 1 }
    }

    /// When the second factor was last proven.
    pub fn at(self) -> Option<DateTime<Utc>> {
        self.two_at
    }

    /// Level 2, proven within `max_age` of `now` (a sensitive action's requirement).
    pub fn fresh(self, max_age: chrono::Duration, now: DateTime<Utc>) -> bool {
        self.two_at.is_some_and(|at| now - at <= max_age)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Arc<user::Model>,
    pub method: Method,
    pub credential: Credential,
    /// How the credential was obtained.
    pub aal: Aal,
}

impl Identity {
    pub fn session(&self) -> Option<&SessionRef> {
        match &self.credential {
            Credential::Session(s) => Some(s),
            _ => None,
        }
    }

    /// The token making the request, if it is one.
    pub fn token_id(&self) -> Option<i64> {
        match self.credential {
            Credential::Token { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// Where a change comes from, for the audit trail and the records a login leaves.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// `Some("cli")` for the command line; `None` over HTTP.
    pub via: Option<&'static str>,
    /// The device cookie the client presented (`service::devices`); never logged.
    pub device: Option<Secret>,
}

impl Origin {
    /// The command line (an operator on the server).
    pub fn cli() -> Self {
        Self { via: Some("cli"), ..Self::default() }
    }

    /// A security event about `user` (if known) caused from here.
    pub fn event(&self, user: Option<&user::Model>, credential: Option<String>) -> EventContext {
        EventContext {
            user_id: user.map(|u| u.id),
            username: user.map(|u| u.username.clone()),
            ip: self.ip,
            user_agent: self.user_agent.clone(),
            credential,
            via: self.via,
            detail: None,
        }
    }
}
