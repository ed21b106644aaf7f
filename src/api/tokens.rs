//! Opaque tokens (DRF's authtoken, one per device) and simplejwt's JWT endpoints.
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json, types::Example};
use serde_json::{Value, json};

use super::security::{Auth, Chain, Nobody, Optional};
use super::{
    ApiTags,
    auth::Caller,
    body::DrfBody,
    fields::{Char, Fields},
    session::Deleted,
};
use crate::{
    error::ApiError,
    events::{EventContext, EventKind},
    service::{
        accounts::{self, Refusal},
        jwt::{JwtError, TokenError},
        tokens,
    },
    state::AppState,
};

pub struct TokenApi {
    pub state: AppState,
}

/// Credentials, and an optional device name for the token.
#[derive(Debug, Object)]
#[oai(example)]
pub struct TokenRequest {
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub username: String,
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub password: String,
    /// A label for this device ("iPhone", "CI"), shown by `GET /tokens/`.
    #[oai(validator(pattern = r"^[^\x00]*$"))]
    pub name: Option<String>,
}

impl Example for TokenRequest {
    fn example() -> Self {
        Self { username: "john".into(), password: "correct-horse-battery".into(), name: Some("iPhone".into()) }
    }
}

#[derive(Debug, Object)]
#[oai(example)]
pub struct TokenBody {
    /// 40 lowercase hex characters, for `Authorization: Token <key>`. Shown once: only a
    /// digest is stored.
    pub token: String,
}

impl Example for TokenBody {
    fn example() -> Self {
        Self { token: "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b".into() }
    }
}

#[derive(Debug, Object)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub created: DateTime<Utc>,
    #[oai(nullable)]
    pub last_used: Option<DateTime<Utc>>,
    #[oai(nullable)]
    pub expires: Option<DateTime<Utc>>,
}

/// Username and password, as simplejwt's `TokenObtainPairView` takes them.
#[derive(Debug, Object)]
#[oai(example)]
pub struct PairRequest {
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub username: String,
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub password: String,
}

impl Example for PairRequest {
    fn example() -> Self {
        Self { username: "john".into(), password: "correct-horse-battery".into() }
    }
}

#[derive(Debug, Object)]
#[oai(example)]
pub struct PairBody {
    /// Exchange it at `POST /api/token/refresh/` for a new access token.
    pub refresh: String,
    /// Send it as `Authorization: Bearer <access>`; short-lived.
    pub access: String,
}

impl Example for PairBody {
    fn example() -> Self {
        Self { refresh: EXAMPLE_JWT.into(), access: EXAMPLE_JWT.into() }
    }
}

/// A shortened JWT for the examples (header.payload.signature).
const EXAMPLE_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.c2lnbmF0dXJl";

/// A refresh token.
#[derive(Debug, Object)]
#[oai(example)]
pub struct RefreshRequest {
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub refresh: String,
}

impl Example for RefreshRequest {
    fn example() -> Self {
        Self { refresh: EXAMPLE_JWT.into() }
    }
}

#[derive(Debug, Object)]
pub struct RefreshBody {
    pub access: String,
    /// Present when `jwt.rotate_refresh_tokens` is on: use it next time; the old one is spent.
    #[oai(skip_serializing_if_is_none)]
    pub refresh: Option<String>,
}

/// An access or refresh token to check.
#[derive(Debug, Object)]
#[oai(example)]
pub struct VerifyRequest {
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub token: String,
}

impl Example for VerifyRequest {
    fn example() -> Self {
        Self { token: EXAMPLE_JWT.into() }
    }
}

/// `{}`
#[derive(Debug, Object)]
pub struct Empty {}

#[derive(ApiResponse)]
pub enum EmptyResponse {
    #[oai(status = 200)]
    Ok(Json<Empty>),
}

const BEARER_CHALLENGE: &str = "Bearer realm=\"api\"";

/// simplejwt's 401s: `{"detail", "code"}` with the Bearer challenge.
pub fn jwt_error(err: JwtError) -> ApiError {
    let body = match err {
        JwtError::Db(e) => return e.into(),
        JwtError::Refused(TokenError::Token(message)) => json!({"detail": message, "code": "token_not_valid"}),
        JwtError::Refused(TokenError::Reused { .. }) => {
            json!({"detail": crate::service::jwt::msg::BLACKLISTED, "code": "token_not_valid"})
        }
        JwtError::Refused(TokenError::NoActiveAccount) => {
            json!({"detail": "No active account found for the given token."})
        }
        JwtError::Refused(TokenError::PasswordChanged) => {
            json!({"detail": "The user's password has been changed.", "code": "password_changed"})
        }
    };
    ApiError::Body { status: StatusCode::UNAUTHORIZED, body, challenge: Some(BEARER_CHALLENGE.into()) }
}

impl TokenApi {
    /// The shared password check; `refused` is the endpoint's own body for bad credentials.
    async fn check(
        &self,
        caller: &Caller,
        data: &Value,
        refused: ApiError,
    ) -> Result<crate::store::user::Model, ApiError> {
        let mut fields = Fields::new(data)?;
        let username = fields.char("username", Char { trim: false, ..Char::REQUIRED });
        let password = fields.char("password", Char::PASSWORD);
        fields.errors.into_result()?;
        let s = &self.state;
        match accounts::check_credentials(
            &s.db,
            &s.passwords,
            &s.login_throttle,
            &username,
            &password,
            caller.creds.client_ip,
        )
        .await?
        {
            Ok(user) => Ok(user),
            Err(Refusal::Throttled(wait)) => Err(caller.throttled(s, "login", Some(&username), wait).await),
            Err(Refusal::Invalid) => {
                let context = EventContext { username: Some(username), ..caller.event(None, None) };
                s.events.emit(EventKind::LoginFailed, context).await;
                Err(refused)
            }
        }
    }
}

#[OpenApi]
impl TokenApi {
    /// Obtain a token (DRF's `obtain_auth_token`)
    ///
    /// A new token per call (one per device; `name` labels it). Unlike DRF, only a digest
    /// is stored, tokens may expire (`token.ttl`), and failures are throttled.
    #[oai(path = "/api-token-auth/", method = "post", operation_id = "api_token_auth", tag = "ApiTags::Token")]
    async fn obtain_token(
        &self,
        caller: Auth<Optional>,
        body: DrfBody<TokenRequest>,
    ) -> Result<Json<TokenBody>, ApiError> {
        let refused = ApiError::Validation(crate::service::FieldErrors::single(
            "non_field_errors",
            "Unable to log in with provided credentials.",
        ));
        let user = self.check(&caller, &body.data, refused).await?;
        let name = Fields::new(&body.data)?.char("name", Char::OPTIONAL);
        let s = &self.state;
        let (key, token) = tokens::create(&s.db, user.id, &name, s.settings.token.ttl).await?;
        s.events.emit(EventKind::TokenCreated, caller.event(Some(&user), Some(token.id.to_string()))).await;
        Ok(Json(TokenBody { token: key }))
    }

    /// List my tokens
    ///
    /// Never the keys themselves.
    #[oai(path = "/tokens/", method = "get", operation_id = "tokens_list", tag = "ApiTags::Token")]
    async fn list_tokens(&self, caller: Auth<Chain>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
        let user = &caller.identity()?.user;
        let rows = tokens::list_for_user(&self.state.db, user.id).await?;
        Ok(Json(
            rows.into_iter()
                .map(|t| TokenInfo {
                    id: t.id,
                    name: t.name,
                    created: t.created_at,
                    last_used: t.last_used,
                    expires: t.expires_at,
                })
                .collect(),
        ))
    }

    /// Revoke one of my tokens
    ///
    /// 404 when the id is not one of the caller's tokens.
    #[oai(path = "/tokens/:id/", method = "delete", operation_id = "tokens_delete", tag = "ApiTags::Token")]
    async fn delete_token(&self, caller: Auth<Chain>, id: Path<String>) -> Result<Deleted, ApiError> {
        let user = &caller.identity()?.user;
        let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
        if !tokens::delete(&self.state.db, user.id, id).await? {
            return Err(ApiError::NotFound);
        }
        self.state.events.emit(EventKind::TokenRevoked, caller.event(Some(user), Some(id.to_string()))).await;
        Ok(Deleted::NoContent)
    }

    /// Obtain a JWT pair (simplejwt's `TokenObtainPairView`)
    #[oai(path = "/api/token/", method = "post", operation_id = "jwt_obtain", tag = "ApiTags::Jwt")]
    async fn jwt_obtain(&self, caller: Auth<Nobody>, body: DrfBody<PairRequest>) -> Result<Json<PairBody>, ApiError> {
        let refused = ApiError::Body {
            status: StatusCode::UNAUTHORIZED,
            body: json!({"detail": "No active account found with the given credentials"}),
            challenge: Some(BEARER_CHALLENGE.into()),
        };
        let user = self.check(&caller, &body.data, refused).await?;
        let pair = self.state.jwt.obtain(&self.state.db, &user).await?;
        self.state.events.emit(EventKind::JwtIssued, caller.event(Some(&user), Some(pair.refresh_jti))).await;
        Ok(Json(PairBody { refresh: pair.refresh, access: pair.access }))
    }

    /// Refresh a JWT (simplejwt's `TokenRefreshView`)
    ///
    /// With `jwt.rotate_refresh_tokens`, also a new refresh token; the old one is spent, and
    /// presenting a spent one again revokes every token descended from the same login.
    #[oai(path = "/api/token/refresh/", method = "post", operation_id = "jwt_refresh", tag = "ApiTags::Jwt")]
    async fn jwt_refresh(
        &self,
        caller: Auth<Nobody>,
        body: DrfBody<RefreshRequest>,
    ) -> Result<Json<RefreshBody>, ApiError> {
        let token = required(&body.data, "refresh")?;
        let events = &self.state.events;
        match self.state.jwt.refresh(&self.state.db, &token).await {
            Ok(done) => {
                if let Some(jti) = done.rotated_to {
                    events.emit(EventKind::JwtRotated, caller.event(Some(&done.user), Some(jti))).await;
                }
                Ok(Json(RefreshBody { access: done.access, refresh: done.refresh }))
            }
            Err(JwtError::Refused(TokenError::Reused { user_id, family, revoked })) => {
                let detail = json!({"family": family, "revoked": revoked});
                let context = EventContext { user_id: Some(user_id), detail: Some(detail), ..caller.event(None, None) };
                events.emit(EventKind::RefreshReuseDetected, context).await;
                Err(jwt_error(JwtError::Refused(TokenError::Reused { user_id, family, revoked })))
            }
            Err(e) => Err(jwt_error(e)),
        }
    }

    /// Verify a JWT (simplejwt's `TokenVerifyView`)
    ///
    /// Any valid token answers `{}`; a blacklisted refresh token is a 401 whatever the settings.
    #[oai(path = "/api/token/verify/", method = "post", operation_id = "jwt_verify", tag = "ApiTags::Jwt")]
    async fn jwt_verify(&self, body: DrfBody<VerifyRequest>) -> Result<EmptyResponse, ApiError> {
        let token = required(&body.data, "token")?;
        self.state.jwt.verify(&self.state.db, &token).await.map_err(jwt_error)?;
        Ok(EmptyResponse::Ok(Json(Empty {})))
    }

    /// Blacklist a refresh token (simplejwt's `TokenBlacklistView`)
    #[oai(path = "/api/token/blacklist/", method = "post", operation_id = "jwt_blacklist", tag = "ApiTags::Jwt")]
    async fn jwt_blacklist(&self, body: DrfBody<RefreshRequest>) -> Result<EmptyResponse, ApiError> {
        let token = required(&body.data, "refresh")?;
        self.state.jwt.blacklist(&self.state.db, &token).await.map_err(jwt_error)?;
        Ok(EmptyResponse::Ok(Json(Empty {})))
    }
}

/// A required CharField, or DRF's 400.
pub fn required(data: &Value, field: &str) -> Result<String, ApiError> {
    let mut fields = Fields::new(data)?;
    let value = fields.char(field, Char::PASSWORD);
    fields.errors.into_result()?;
    Ok(value)
}
