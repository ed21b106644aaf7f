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

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Arc<user::Model>,
    pub method: Method,
    pub credential: Credential,
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
