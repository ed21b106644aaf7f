//! Security events: what the use cases in `service` emit. Each one is counted in the
//! metrics, written to the audit trail (off the request path), logged under
//! `portcullis::audit`, and — when it can end a credential — told to the revocation
//! listener (the credential cache) and, on PostgreSQL, to the other instances, so a
//! revocation made through this process applies on its very next request.
use std::{net::IpAddr, sync::Arc};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use serde_json::{Value, json};

use crate::{
    audit::{AuditSink, Record},
    metrics::{EventLabels, Metrics, MfaLabels, OutcomeLabels, ScopeLabels},
};

/// The PostgreSQL channel on which instances tell each other of revocations.
pub const REVOCATION_CHANNEL: &str = "portcullis_revocations";

/// Whatever holds resolved credentials and must forget a user's when one may have ended.
pub trait RevocationListener: Send + Sync {
    fn user_changed(&self, user_id: i64);
}

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
    /// A user was put in a group (`detail.group`).
    GroupJoined,
    TokenCreated,
    TokenRevoked,
    JwtIssued,
    JwtRotated,
    /// A refresh token was blacklisted (`/api/token/blacklist/`, logout with a refresh token).
    JwtBlacklisted,
    /// A rotated-away refresh token was presented again: its family was revoked.
    RefreshReuseDetected,
    /// A throttle refused the request; `detail.scope` says which.
    Throttled,
    /// `import-django` wrote users, groups, permissions, tokens or sessions.
    DjangoImport,
    /// `POST /password/reset/` for an address: the user it reached (none for an unknown
    /// address, `detail.address_known = false`), `detail.mail` sent or failed.
    PasswordResetRequested,
    /// A reset link set a new password (beside the `password_changed` it caused).
    PasswordResetCompleted,
    /// A verification mail went out (registration, `/registration/resend-email/`).
    EmailVerificationSent,
    /// A verification link was followed: the user's address is verified.
    EmailVerified,
    /// A right password of a user with a second factor: a pending login waits for its code
    /// (`detail.purpose`: session, token or jwt).
    MfaChallenged,
    /// A TOTP was confirmed by its first code (and recovery codes were handed out).
    MfaEnrolled,
    /// A TOTP code was accepted (`detail.purpose`: login, step_up, deactivate).
    MfaVerified,
    /// A code was refused (`detail.method`, `detail.purpose`, `detail.reason`: wrong, replayed).
    MfaFailed,
    /// A recovery code was accepted, and spent (`detail.left`: how many remain).
    MfaRecoveryCodeUsed,
    /// A new set of recovery codes replaced the old one.
    MfaRecoveryCodesGenerated,
    /// The second factor was removed (by the user with a code, or `disable_mfa`).
    MfaDisabled,
    /// A new JWT signing key (`detail`: `kid`, `algorithm`, `reason`, the previous key and
    /// when it stops verifying).
    SigningKeyRotated,
}

impl EventKind {
    /// Whether the event can end a credential (a logout, a revocation, a new password,
    /// a deactivation, or login's key rotation) or change one (an accepted second factor
    /// raises the assurance level of the credential that proved it): cached copies must go.
    pub fn may_revoke(self) -> bool {
        !matches!(
            self,
            Self::UserCreated
                | Self::LoginFailed
                | Self::TokenCreated
                | Self::JwtIssued
                | Self::JwtRotated
                | Self::UserActivated
                | Self::GroupJoined
                | Self::PermissionGranted
                | Self::Throttled
                | Self::PasswordResetRequested
                | Self::PasswordResetCompleted
                | Self::EmailVerificationSent
                | Self::EmailVerified
                | Self::MfaChallenged
                | Self::MfaFailed
                | Self::MfaRecoveryCodesGenerated
                | Self::SigningKeyRotated
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
            Self::GroupJoined => "group_joined",
            Self::TokenCreated => "token_created",
            Self::TokenRevoked => "token_revoked",
            Self::JwtIssued => "jwt_issued",
            Self::JwtRotated => "jwt_rotated",
            Self::JwtBlacklisted => "jwt_blacklisted",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::Throttled => "throttled",
            Self::DjangoImport => "django_import",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordResetCompleted => "password_reset_completed",
            Self::EmailVerificationSent => "email_verification_sent",
            Self::EmailVerified => "email_verified",
            Self::MfaChallenged => "mfa_challenged",
            Self::MfaEnrolled => "mfa_enrolled",
            Self::MfaVerified => "mfa_verified",
            Self::MfaFailed => "mfa_failed",
            Self::MfaRecoveryCodeUsed => "mfa_recovery_code_used",
            Self::MfaRecoveryCodesGenerated => "mfa_recovery_codes_generated",
            Self::MfaDisabled => "mfa_disabled",
            Self::SigningKeyRotated => "signing_key_rotated",
        }
    }

    pub const ALL: [EventKind; 32] = [
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
        Self::GroupJoined,
        Self::TokenCreated,
        Self::TokenRevoked,
        Self::JwtIssued,
        Self::JwtRotated,
        Self::JwtBlacklisted,
        Self::RefreshReuseDetected,
        Self::Throttled,
        Self::DjangoImport,
        Self::PasswordResetRequested,
        Self::PasswordResetCompleted,
        Self::EmailVerificationSent,
        Self::EmailVerified,
        Self::MfaChallenged,
        Self::MfaEnrolled,
        Self::MfaVerified,
        Self::MfaFailed,
        Self::MfaRecoveryCodeUsed,
        Self::MfaRecoveryCodesGenerated,
        Self::MfaDisabled,
        Self::SigningKeyRotated,
    ];
}

/// Who and where. Never a secret: `credential` is a public id.
#[derive(Debug, Clone, Default, PartialEq)]
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

impl EventContext {
    pub fn with_detail(self, detail: Value) -> Self {
        Self { detail: Some(detail), ..self }
    }
}

#[derive(Clone)]
pub struct Events {
    listener: Arc<dyn RevocationListener>,
    metrics: Arc<Metrics>,
    audit: AuditSink,
    /// Where other instances hear of revocations (PostgreSQL NOTIFY), if enabled.
    notify: Option<DatabaseConnection>,
}

impl Events {
    pub fn new(
        listener: Arc<dyn RevocationListener>,
        metrics: Arc<Metrics>,
        audit: AuditSink,
        notify: Option<DatabaseConnection>,
    ) -> Self {
        Self { listener, metrics, audit, notify }
    }

    pub async fn emit(&self, kind: EventKind, ctx: EventContext) {
        if kind.may_revoke()
            && let Some(user_id) = ctx.user_id
        {
            self.listener.user_changed(user_id);
            if let Some(db) = &self.notify {
                notify_instances(db, user_id).await;
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

    /// Counts an event in the metrics without recording it (a repeat the audit trail has
    /// already seen within its window).
    pub fn count_only(&self, kind: EventKind, ctx: &EventContext) {
        self.count(kind, ctx);
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
            EventKind::MfaVerified | EventKind::MfaRecoveryCodeUsed | EventKind::MfaFailed => {
                let method = match ctx.detail.as_ref().and_then(|d| d["method"].as_str()) {
                    Some("recovery_code") => "recovery_code",
                    _ => "totp",
                };
                let outcome = if kind == EventKind::MfaFailed { "failure" } else { "success" };
                m.mfa_codes.get_or_create(&MfaLabels { method, outcome }).inc();
            }
            EventKind::Throttled => {
                let scope = match ctx.detail.as_ref().and_then(|d| d["scope"].as_str()) {
                    Some("login") => "login",
                    Some("anon") => "anon",
                    Some("user") => "user",
                    Some("email") => "email",
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

/// Tells the other instances on this PostgreSQL database that a user's credentials changed
/// (elsewhere there is one instance per database).
async fn notify_instances(db: &DatabaseConnection, user_id: i64) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let sql = format!("SELECT pg_notify('{REVOCATION_CHANNEL}', '{user_id}')");
    if let Err(e) = db.execute_unprepared(&sql).await {
        tracing::warn!(error = %e, "could not notify other instances of a revocation");
    }
}
