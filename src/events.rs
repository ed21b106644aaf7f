//! Security events: the one place they are emitted. Today they go to the log under the
//! `portcullis::audit` target; the audit trail and metrics subscribe here.
use std::{net::IpAddr, sync::Arc};

use crate::authn::cache::CredentialCache;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    UserCreated,
    LoginSucceeded,
    LoginFailed,
    LoggedOut,
    LoggedOutEverywhere,
    SessionRevoked,
    PasswordChanged,
    UserActivated,
    UserDeactivated,
    PermissionGranted,
    PermissionRevoked,
    TokenCreated,
    TokenRevoked,
    JwtIssued,
}

impl EventKind {
    /// Whether the event can end a credential (a logout, a revocation, a new password,
    /// a deactivation, or login's key rotation).
    pub fn may_revoke(self) -> bool {
        !matches!(
            self,
            Self::UserCreated | Self::LoginFailed | Self::TokenCreated | Self::JwtIssued | Self::UserActivated
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user_created",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoggedOut => "logged_out",
            Self::LoggedOutEverywhere => "logged_out_everywhere",
            Self::SessionRevoked => "session_revoked",
            Self::PasswordChanged => "password_changed",
            Self::UserActivated => "user_activated",
            Self::UserDeactivated => "user_deactivated",
            Self::PermissionGranted => "permission_granted",
            Self::PermissionRevoked => "permission_revoked",
            Self::TokenCreated => "token_created",
            Self::TokenRevoked => "token_revoked",
            Self::JwtIssued => "jwt_issued",
        }
    }
}

/// Who and where. Never a secret: `credential` is a public id.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub credential: Option<String>,
    /// Where the change came from when not over HTTP ("cli").
    pub via: Option<&'static str>,
}

/// Where security events go: the log today; the credential cache, so that a revocation
/// made through this process takes effect on its very next request.
#[derive(Clone)]
pub struct Events {
    cache: Arc<CredentialCache>,
}

impl Events {
    pub fn new(cache: Arc<CredentialCache>) -> Self {
        Self { cache }
    }

    pub fn emit(&self, kind: EventKind, ctx: EventContext) {
        if kind.may_revoke()
            && let Some(user_id) = ctx.user_id
        {
            self.cache.invalidate_user(user_id);
        }
        tracing::info!(
            target: "portcullis::audit",
            event = kind.as_str(),
            user_id = ctx.user_id,
            username = ctx.username.as_deref(),
            ip = ctx.ip.map(|ip| ip.to_string()),
            user_agent = ctx.user_agent.as_deref(),
            credential = ctx.credential.as_deref(),
            via = ctx.via,
        );
    }
}
