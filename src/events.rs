//! Security events: the one place they are emitted. Each one is counted in the metrics,
//! written to the audit trail (off the request path), logged under `portcullis::audit`, and
//! — when it can end a credential — drops the user's entries from the credential cache, so
//! a revocation made through this process applies on its very next request.
use std::{net::IpAddr, sync::Arc};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};

use crate::{
    audit::{AuditSink, Record},
    authn::cache::CredentialCache,
    metrics::{EventLabels, Metrics, OutcomeLabels, ScopeLabels},
};

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
    JwtRotated,
    /// A rotated-away refresh token was presented again: its family was revoked.
    RefreshReuseDetected,
    /// A throttle refused the request; `detail.scope` says which.
    Throttled,
    /// `import-django` wrote users, groups, permissions, tokens or sessions.
    DjangoImport,
}

impl EventKind {
    /// Whether the event can end a credential (a logout, a revocation, a new password,
    /// a deactivation, or login's key rotation).
    pub fn may_revoke(self) -> bool {
        !matches!(
            self,
            Self::UserCreated
                | Self::LoginFailed
                | Self::TokenCreated
                | Self::JwtIssued
                | Self::JwtRotated
                | Self::UserActivated
                | Self::Throttled
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
            Self::JwtRotated => "jwt_rotated",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::Throttled => "throttled",
            Self::DjangoImport => "django_import",
        }
    }

    pub const ALL: [EventKind; 18] = [
        Self::UserCreated,
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::LoggedOut,
        Self::LoggedOutEverywhere,
        Self::SessionRevoked,
        Self::PasswordChanged,
        Self::UserActivated,
        Self::UserDeactivated,
        Self::PermissionGranted,
        Self::PermissionRevoked,
        Self::TokenCreated,
        Self::TokenRevoked,
        Self::JwtIssued,
        Self::JwtRotated,
        Self::RefreshReuseDetected,
        Self::Throttled,
        Self::DjangoImport,
    ];
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
    /// Anything else worth keeping (a JSON object).
    pub detail: Option<Value>,
}

#[derive(Clone)]
pub struct Events {
    cache: Arc<CredentialCache>,
    metrics: Arc<Metrics>,
    audit: AuditSink,
    /// Where other instances hear of revocations (PostgreSQL NOTIFY), if enabled.
    notify: Option<DatabaseConnection>,
}

impl Events {
    pub fn new(
        cache: Arc<CredentialCache>,
        metrics: Arc<Metrics>,
        audit: AuditSink,
        notify: Option<DatabaseConnection>,
    ) -> Self {
        Self { cache, metrics, audit, notify }
    }

    pub async fn emit(&self, kind: EventKind, ctx: EventContext) {
        if kind.may_revoke()
            && let Some(user_id) = ctx.user_id
        {
            self.cache.invalidate_user(user_id);
            if let Some(db) = &self.notify {
                crate::authn::notify::notify(db, user_id).await;
            }
        }
        self.count(kind, &ctx);
        tracing::info!(
            target: "portcullis::audit",
            event = kind.as_str(),
            user_id = ctx.user_id,
            username = ctx.username.as_deref(),
            ip = ctx.ip.map(|ip| ip.to_string()),
            credential = ctx.credential.as_deref(),
            via = ctx.via,
        );
        let mut detail = ctx.detail.unwrap_or_else(|| json!({}));
        if let (Some(via), Some(map)) = (ctx.via, detail.as_object_mut()) {
            map.insert("via".into(), json!(via));
        }
        self.audit.record(Record {
            at: Utc::now(),
            event: kind.as_str(),
            user_id: ctx.user_id,
            username: ctx.username,
            ip: ctx.ip.map(|ip| ip.to_string()),
            user_agent: ctx.user_agent,
            credential: ctx.credential,
            detail,
        });
    }

    fn count(&self, kind: EventKind, ctx: &EventContext) {
        let m = &self.metrics;
        m.security_events.get_or_create(&EventLabels { event: kind.as_str() }).inc();
        match kind {
            EventKind::LoginSucceeded => {
                m.logins.get_or_create(&OutcomeLabels { outcome: "success" }).inc();
            }
            EventKind::LoginFailed => {
                m.logins.get_or_create(&OutcomeLabels { outcome: "failure" }).inc();
            }
            EventKind::JwtRotated => {
                m.refresh_rotations.inc();
            }
            EventKind::RefreshReuseDetected => {
                m.reuse_detections.inc();
            }
            EventKind::Throttled => {
                let scope = match ctx.detail.as_ref().and_then(|d| d["scope"].as_str()) {
                    Some("login") => "login",
                    Some("anon") => "anon",
                    Some("user") => "user",
                    _ => "other",
                };
                m.throttled.get_or_create(&ScopeLabels { scope }).inc();
            }
            _ => {}
        }
    }

    /// Waits until the events emitted so far are in the audit trail (CLI exit, tests).
    pub async fn flush(&self) {
        self.audit.flush().await;
    }
}
