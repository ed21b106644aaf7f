//! The audit trail: every security event, for staff; a user's own events, for them.
use chrono::{DateTime, Utc};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use serde_json::Value;

use super::{
    ApiTags,
    caller::Authed,
    pagination::{Page, PageRequest},
};
use crate::{
    error::ApiError,
    service::{
        FieldErrors,
        audit_log::{self, Filter},
    },
    state::AppState,
    store::audit,
};

pub struct AuditApi {
    pub state: std::sync::Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// login_succeeded, login_failed, logged_out, logged_out_everywhere, session_revoked,
    /// token_created, token_revoked, jwt_issued, jwt_rotated, refresh_reuse_detected,
    /// password_changed, user_created, user_activated, user_deactivated,
    /// permission_granted, permission_revoked, group_joined, jwt_blacklisted, throttled,
    /// django_import
    pub event: String,
    #[oai(nullable)]
    pub user_id: Option<i64>,
    /// The user, or for a failed login the username that was tried.
    #[oai(nullable)]
    pub username: Option<String>,
    #[oai(nullable)]
    pub ip: Option<String>,
    #[oai(nullable)]
    pub user_agent: Option<String>,
    /// The public id of the credential involved (session id, token id, refresh `jti`);
    /// never a secret.
    #[oai(nullable)]
    pub credential: Option<String>,
    pub detail: Value,
}

const DATETIME_FORMAT: &str =
    "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].";

fn datetime(errors: &mut FieldErrors, field: &str, value: Option<&str>) -> Option<DateTime<Utc>> {
    let value = value?;
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.add(field, DATETIME_FORMAT);
            None
        }
    }
}

fn entry(e: audit::Model) -> AuditEntry {
    AuditEntry {
        id: e.id,
        at: e.at,
        event: e.event,
        user_id: e.user_id,
        username: e.username,
        ip: e.ip,
        user_agent: e.user_agent,
        credential: e.credential,
        detail: serde_json::from_str(&e.detail).unwrap_or_default(),
    }
}

impl AuditApi {
    async fn list(
        &self,
        path: &str,
        mut filter: Filter,
        since: Option<&str>,
        until: Option<&str>,
        request: PageRequest,
    ) -> Result<Json<Page<AuditEntry>>, ApiError> {
        let mut errors = FieldErrors::default();
        filter.since = datetime(&mut errors, "since", since);
        filter.until = datetime(&mut errors, "until", until);
        errors.into_result()?;
        let (rows, count) =
            audit_log::page(&self.state.db, &filter, request.page.saturating_sub(1), request.size).await?;
        request.check(count)?;
        let filters = [
            ("user", filter.username.as_deref()),
            ("event", filter.event.as_deref()),
            ("since", since),
            ("until", until),
        ];
        let encode = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        let extra: String =
            filters.into_iter().filter_map(|(key, value)| value.map(|v| format!("&{key}={}", encode(v)))).collect();
        Ok(Json(request.page(path, count, &extra, rows.into_iter().map(entry).collect())))
    }
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AuditApi {
    /// The audit trail (staff)
    ///
    /// Every security event, newest first. Filters: `user` (username), `event`, `since` and
    /// `until` (ISO 8601 with a timezone). Paginated as `GET /users/`.
    #[oai(path = "/audit/", method = "get", operation_id = "audit_list")]
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        _caller: Authed,
        user: Query<Option<String>>,
        event: Query<Option<String>>,
        since: Query<Option<String>>,
        until: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page_size: Query<Option<u64>>,
    ) -> Result<Json<Page<AuditEntry>>, ApiError> {
        let filter = Filter { username: user.0, event: event.0, ..Filter::default() };
        self.list("/audit/", filter, since.as_deref(), until.as_deref(), PageRequest::new(page.0, page_size.0)).await
    }

    /// My security events
    ///
    /// The caller's own events (logins, logouts, revocations, password changes...),
    /// newest first. Filters: `event`, `since`, `until`.
    #[oai(path = "/audit/me/", method = "get", operation_id = "audit_me", tag = "ApiTags::Account")]
    async fn audit_me(
        &self,
        caller: Authed,
        event: Query<Option<String>>,
        since: Query<Option<String>>,
        until: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page_size: Query<Option<u64>>,
    ) -> Result<Json<Page<AuditEntry>>, ApiError> {
        let filter = Filter { user_id: Some(caller.user.id), event: event.0, ..Filter::default() };
        self.list("/audit/me/", filter, since.as_deref(), until.as_deref(), PageRequest::new(page.0, page_size.0)).await
    }
}
