//! Browser sessions: login, logout, CSRF, the session itself and the user's session list.
use chrono::{DateTime, Utc};
use poem::web::cookie::CookieJar;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use serde_json::{Map, Value, json};

use super::{
    ApiTags, Deleted, MessageBody,
    body::DrfBody,
    caller::{Authed, MaybeAuthed},
    cookies,
    fields::{Char, Fields},
    mfa::{LoginAnswer, MfaRequiredBody},
    pagination::{Page, PageRequest},
};
use crate::{
    authn::{Identity, csrf},
    error::{ApiError, jwt_error},
    service::{
        accounts::{Login, LoginError, LogoutError, PasswordChangeError, WithDevice},
        sessions, users,
    },
    state::AppState,
};

pub struct SessionApi {
    pub state: std::sync::Arc<AppState>,
}

/// Username and password (JSON or form-encoded).
#[derive(Debug, Object)]
#[oai(example)]
pub struct LoginRequest {
    /// Case-sensitive, as Django's.
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub username: String,
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub password: String,
}

impl Example for LoginRequest {
    fn example() -> Self {
        Self { username: "john".into(), password: "correct-horse-battery".into() }
    }
}

#[derive(ApiResponse)]
pub enum MessageResponse {
    #[oai(status = 200)]
    Ok(Json<MessageBody>),
}

fn message(text: impl Into<String>) -> MessageResponse {
    MessageResponse::Ok(Json(MessageBody { message: text.into() }))
}

#[derive(Debug, Object)]
pub struct CsrfBody {
    /// A masked CSRF token for the `X-CSRFToken` header (the cookie's secret works too).
    #[oai(rename = "csrfToken")]
    pub csrf_token: String,
}

#[derive(Debug, Object)]
pub struct SessionBody {
    /// The public id of the session that authenticated this request, or null. Never the
    /// cookie's secret value.
    #[oai(nullable)]
    pub session_key: Option<String>,
    /// "" for an anonymous caller.
    pub username: String,
}

#[derive(Debug, Object)]
pub struct SessionInfo {
    pub id: String,
    pub created: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    #[oai(nullable)]
    pub ip: Option<String>,
    #[oai(nullable)]
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// Optional: with JWT authentication, the refresh token to blacklist too. A session or
/// Token caller sends an empty body or `{}`.
#[derive(Debug, Object)]
#[oai(example)]
pub struct LogoutRequest {
    #[oai(validator(pattern = r"^[^\x00]*$"))]
    pub refresh: Option<String>,
}

impl Example for LogoutRequest {
    fn example() -> Self {
        Self { refresh: None }
    }
}

/// Old and new password.
#[derive(Debug, Object)]
#[oai(example)]
pub struct PasswordChangeRequest {
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub old_password: String,
    /// Checked by Django's validators, as at registration.
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub new_password: String,
}

impl Example for PasswordChangeRequest {
    fn example() -> Self {
        Self { old_password: "correct-horse-battery".into(), new_password: "tr0ub4dor-and-3-more".into() }
    }
}

/// The session's own data: any JSON object.
pub type SessionData = std::collections::HashMap<String, Value>;

#[OpenApi(tag = "ApiTags::Session")]
impl SessionApi {
    /// Log in (session)
    ///
    /// Checks the username and password and opens a session: sets `sessionid` (HttpOnly)
    /// and a fresh `csrftoken`. A session cookie already presented is replaced (session
    /// fixation). Wrong password, unknown user and inactive user all answer the same 400 in
    /// the same time; repeated failures are throttled (429 + Retry-After). For a user with a
    /// second factor, a right password answers `{"mfa_required": true, "ephemeral_token"}`
    /// and sets nothing: `POST /mfa/verify/` with a code finishes the login.
    #[oai(path = "/login/", method = "post", operation_id = "login")]
    async fn login(
        &self,
        caller: MaybeAuthed,
        jar: &CookieJar,
        body: DrfBody<LoginRequest>,
    ) -> Result<Json<LoginAnswer>, ApiError> {
        let state = &self.state;
        caller.refuse_foreign_origin(&state.settings)?;
        let mut fields = Fields::new(&body.data)?;
        let username = fields.char("username", Char { trim: false, ..Char::REQUIRED });
        let password = fields.char("password", Char::PASSWORD);
        // The seed's view reads `request.data.get(...)` and answers any failure alike: a
        // missing or malformed field is one more way of not logging in.
        if !fields.errors.is_empty() {
            return Err(invalid_credentials());
        }
        let presented = caller.identity.as_deref();
        let key = match state.accounts.log_in(&username, &password, presented, &caller.origin()).await {
            Ok(Login::Done(WithDevice { value: key, device })) => {
                if let Some(device) = device {
                    jar.add(cookies::device(&device, &state.settings));
                }
                key
            }
            Ok(Login::SecondFactor(pending)) => {
                let body = MfaRequiredBody { mfa_required: true, ephemeral_token: pending.ephemeral_token };
                return Ok(Json(LoginAnswer::MfaRequired(body)));
            }
            Err(LoginError::Invalid | LoginError::SecondFactorRequired) => return Err(invalid_credentials()),
            Err(LoginError::Unverified) => return Err(ApiError::email_not_verified()),
            Err(LoginError::Throttled(wait)) => return Err(ApiError::Throttled { wait }),
            Err(LoginError::Service(e)) => return Err(e.into()),
        };
        jar.add(cookies::session(&key, &state.settings));
        jar.add(cookies::csrf(&csrf::new_secret(), &state.settings));
        Ok(Json(LoginAnswer::LoggedIn(MessageBody { message: "Logged in successfully".into() })))
    }

    /// Log out
    ///
    /// Ends what authenticated the request: a session is deleted and its cookie expired; a
    /// token is revoked. Session requests need the CSRF header; token requests never do.
    #[oai(path = "/logout/", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        caller: MaybeAuthed,
        jar: &CookieJar,
        body: DrfBody<LogoutRequest, false>,
    ) -> Result<MessageResponse, ApiError> {
        let mut fields = Fields::new(&body.data)?;
        let refresh = fields.char("refresh", Char::OPTIONAL);
        fields.errors.into_result()?;
        let refresh = Some(refresh.as_str()).filter(|r| !r.is_empty());
        let state = &self.state;
        match state.accounts.logout(caller.identity.as_deref(), refresh, &caller.origin()).await {
            Ok(true) => jar.add(cookies::removal(&state.settings.session.cookie_name, &state.settings)),
            Ok(false) => {}
            Err(LogoutError::Jwt(e)) => return Err(jwt_error(e)),
            Err(LogoutError::Service(e)) => return Err(e.into()),
        }
        Ok(message("Logged out successfully"))
    }

    /// Log out everywhere
    ///
    /// Revokes every session, token and JWT of the user, this one included.
    #[oai(path = "/logoutall/", method = "post", operation_id = "logoutall")]
    async fn logoutall(&self, caller: Authed, jar: &CookieJar) -> Result<MessageResponse, ApiError> {
        let state = &self.state;
        state.accounts.logout_everywhere(&caller.user, &caller.origin()).await?;
        if caller.creds.cookies.contains_key(&state.settings.session.cookie_name) {
            jar.add(cookies::removal(&state.settings.session.cookie_name, &state.settings));
        }
        Ok(message("Logged out of every session and token"))
    }

    /// Get a CSRF token
    ///
    /// Sets the `csrftoken` cookie if missing (Django's `ensure_csrf_cookie`) and returns a
    /// masked token to send as `X-CSRFToken` on unsafe session requests.
    #[oai(path = "/csrf/", method = "get", operation_id = "csrf")]
    async fn csrf(&self, caller: MaybeAuthed, jar: &CookieJar) -> Json<CsrfBody> {
        let settings = &self.state.settings;
        let cookie = caller.creds.cookies.get(&settings.csrf.cookie_name).map(String::as_str);
        let secret = csrf::valid_cookie_secret(cookie).unwrap_or_else(|| {
            let secret = csrf::new_secret();
            jar.add(cookies::csrf(&secret, settings));
            secret
        });
        Json(CsrfBody { csrf_token: csrf::mask(&secret) })
    }

    /// The current session
    #[oai(path = "/session/", method = "get", operation_id = "session")]
    async fn session(&self, caller: MaybeAuthed) -> Json<SessionBody> {
        let identity = caller.identity.as_deref();
        Json(SessionBody {
            session_key: identity.and_then(Identity::session).map(|s| s.public_id.clone()),
            username: identity.map(|i| i.user.username.clone()).unwrap_or_default(),
        })
    }

    /// Read the session's data
    #[oai(path = "/session/data/", method = "get", operation_id = "session_data_get")]
    async fn session_data(&self, caller: Authed) -> Result<Json<Value>, ApiError> {
        let session = caller.session().ok_or(ApiError::NotFound)?;
        let data = sessions::data(&self.state.db, session.id).await?.ok_or(ApiError::NotFound)?;
        Ok(Json(Value::Object(data)))
    }

    /// Update the session's data
    ///
    /// Merges the body into the data: a key set to `null` is deleted. Concurrent updates of
    /// different keys all survive. Answers the merged object.
    #[oai(path = "/session/data/", method = "patch", operation_id = "session_data_patch")]
    async fn patch_session_data(
        &self,
        caller: Authed,
        body: DrfBody<SessionData, false>,
    ) -> Result<Json<Value>, ApiError> {
        let session = caller.session().ok_or(ApiError::NotFound)?;
        let patch: &Map<String, Value> = Fields::new(&body.data)?.data;
        let limit = self.state.settings.session.max_data_bytes;
        let data = sessions::merge_data(&self.state.db, session.id, patch, limit).await?.ok_or(ApiError::NotFound)?;
        Ok(Json(Value::Object(data)))
    }

    /// List my sessions
    ///
    /// Newest first, paginated as `GET /users/` (`?page=`, `?page_size=`).
    #[oai(path = "/sessions/", method = "get", operation_id = "sessions_list")]
    async fn sessions(
        &self,
        caller: Authed,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page_size: Query<Option<u64>>,
    ) -> Result<Json<Page<SessionInfo>>, ApiError> {
        let request = PageRequest::new(page.0, page_size.0);
        let current = caller.session().map(|s| s.id);
        let (rows, count) =
            sessions::page_for_user(&self.state.db, caller.user.id, request.page - 1, request.size).await?;
        request.check(count)?;
        let results = rows
            .into_iter()
            .map(|s| SessionInfo {
                current: Some(s.id) == current,
                id: s.public_id,
                created: s.created_at,
                last_seen: s.last_seen,
                expires: s.expires_at,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect();
        Ok(Json(request.page("/sessions/", count, "", results)))
    }

    /// Revoke one of my sessions
    ///
    /// 404 when the id is not one of the caller's sessions.
    #[oai(path = "/sessions/:id/", method = "delete", operation_id = "sessions_delete")]
    async fn delete_session(&self, caller: Authed, jar: &CookieJar, id: Path<String>) -> Result<Deleted, ApiError> {
        let state = &self.state;
        let deleted =
            state.accounts.revoke_session(&caller.user, &id, &caller.origin()).await?.ok_or(ApiError::NotFound)?;
        if caller.session().is_some_and(|s| s.id == deleted) {
            jar.add(cookies::removal(&state.settings.session.cookie_name, &state.settings));
        }
        Ok(Deleted::NoContent)
    }

    /// Change my password
    ///
    /// Every other session and token of the user stops working; the current session goes
    /// on under a new key (Django's `update_session_auth_hash`). A user with a second factor
    /// needs it proven within `mfa.step_up_age` (403 `mfa_required` otherwise).
    #[oai(path = "/password/change/", method = "post", operation_id = "password_change", tag = "ApiTags::Account")]
    async fn password_change(
        &self,
        caller: Authed,
        jar: &CookieJar,
        body: DrfBody<PasswordChangeRequest>,
    ) -> Result<MessageResponse, ApiError> {
        let mut fields = Fields::new(&body.data)?;
        let old = fields.char("old_password", Char::PASSWORD);
        let new = fields.char("new_password", Char::PASSWORD.max(users::MAX_PASSWORD));
        fields.errors.into_result()?;
        let state = &self.state;
        match state.accounts.change_password(&caller, &old, new, &caller.origin()).await {
            Ok(Some(key)) => jar.add(cookies::session(&key, &state.settings)),
            Ok(None) => {}
            Err(PasswordChangeError::Throttled(wait)) => return Err(ApiError::Throttled { wait }),
            Err(PasswordChangeError::Service(e)) => return Err(e.into()),
        }
        Ok(message("Password changed successfully"))
    }
}

/// The seed's answer to any failed login, missing fields aside.
fn invalid_credentials() -> ApiError {
    ApiError::Body {
        status: poem::http::StatusCode::BAD_REQUEST,
        body: json!({"error": "Invalid credentials"}),
        challenge: None,
    }
}
