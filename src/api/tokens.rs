//! Opaque tokens (DRF's authtoken, one per device) and simplejwt's JWT endpoints.
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use poem::web::cookie::CookieJar;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use serde_json::{Value, json};

use super::{
    ApiTags, Deleted,
    body::DrfBody,
    caller::{Authed, MaybeAuthed},
    cookies,
    fields::{Char, Fields},
    mfa::{MfaRequiredBody, PairAnswer, TokenAnswer},
    pagination::{Page, PageRequest},
};
use crate::{
    error::{ApiError, BEARER_CHALLENGE, jwt_error},
    service::{
        accounts::{Login, LoginError, WithDevice},
        tokens,
    },
    state::AppState,
};

pub struct TokenApi {
    pub state: std::sync::Arc<AppState>,
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

/// `{}` (as a request: nothing is read from it; the body may be left out).
#[derive(Debug, Object)]
pub struct Empty {}

#[derive(ApiResponse)]
pub enum EmptyResponse {
    #[oai(status = 200)]
    Ok(Json<Empty>),
}

impl TokenApi {
    /// Sets the device cookie a login earned, if any; the answer itself, or `Err` with the
    /// pending login of a user with a second factor.
    fn with_device<T>(&self, jar: &CookieJar, answer: Login<T>) -> Result<T, MfaRequiredBody> {
        match answer {
            Login::Done(WithDevice { value, device }) => {
                if let Some(device) = device {
                    jar.add(cookies::device(&device, &self.state.settings));
                }
                Ok(value)
            }
            Login::SecondFactor(pending) => {
                Err(MfaRequiredBody { mfa_required: true, ephemeral_token: pending.ephemeral_token })
            }
        }
    }
}

/// `POST /tokens/`: an optional device name.
#[derive(Debug, Object)]
#[oai(example)]
pub struct NewTokenRequest {
    /// A label for the device ("CI", "laptop"), shown by `GET /tokens/`.
    #[oai(validator(max_length = 100, pattern = r"^[^\x00]*$"))]
    pub name: Option<String>,
}

impl Example for NewTokenRequest {
    fn example() -> Self {
        Self { name: Some("CI".into()) }
    }
}

#[derive(ApiResponse)]
pub enum CreatedToken {
    /// The token, shown once.
    #[oai(status = 201)]
    Created(Json<TokenBody>),
}

/// Username and password from a credential endpoint's body (DRF's serializer fields).
fn credentials(data: &Value) -> Result<(String, String), ApiError> {
    let mut fields = Fields::new(data)?;
    let username = fields.char("username", Char { trim: false, ..Char::REQUIRED });
    let password = fields.char("password", Char::PASSWORD);
    fields.errors.into_result()?;
    Ok((username, password))
}

/// A login failure as this endpoint words it (`refused` for bad credentials).
fn login_error(e: LoginError, refused: ApiError) -> ApiError {
    match e {
        // Only Basic refuses for a second factor; these endpoints ask for it instead.
        LoginError::Invalid | LoginError::SecondFactorRequired => refused,
        LoginError::Unverified => ApiError::email_not_verified(),
        LoginError::Throttled(wait) => ApiError::Throttled { wait },
        LoginError::Service(e) => e.into(),
    }
}

#[OpenApi]
impl TokenApi {
    /// Obtain a token (DRF's `obtain_auth_token`)
    ///
    /// A new token per call (one per device; `name` labels it). Unlike DRF, only a digest
    /// is stored, tokens may expire (`token.ttl`), and failures are throttled. For a user
    /// with a second factor, a right password answers `{"mfa_required": true,
    /// "ephemeral_token"}`: `POST /mfa/verify/` with a code issues the token.
    #[oai(path = "/api-token-auth/", method = "post", operation_id = "api_token_auth", tag = "ApiTags::Token")]
    async fn obtain_token(
        &self,
        caller: MaybeAuthed,
        jar: &CookieJar,
        body: DrfBody<TokenRequest>,
    ) -> Result<Json<TokenAnswer>, ApiError> {
        let (username, password) = credentials(&body.data)?;
        let name = Fields::new(&body.data)?.char("name", Char::OPTIONAL);
        let accounts = &self.state.accounts;
        let key = accounts.obtain_token(&username, &password, &name, &caller.origin()).await.map_err(|e| {
            let refused =
                crate::service::FieldErrors::single("non_field_errors", "Unable to log in with provided credentials.");
            login_error(e, ApiError::Validation(refused))
        })?;
        Ok(Json(match self.with_device(jar, key) {
            Ok(token) => TokenAnswer::Token(TokenBody { token }),
            Err(pending) => TokenAnswer::MfaRequired(pending),
        }))
    }

    /// Create a token for myself
    ///
    /// knox's login view: an authenticated caller (a browser session, say) gets an opaque
    /// token for another device, at the caller's own assurance level. A user with a second
    /// factor needs it proven within `mfa.step_up_age` (403 `mfa_required` otherwise).
    #[oai(path = "/tokens/", method = "post", operation_id = "tokens_create", tag = "ApiTags::Token")]
    async fn create_token(
        &self,
        caller: Authed,
        body: DrfBody<NewTokenRequest, false>,
    ) -> Result<CreatedToken, ApiError> {
        let mut fields = Fields::new(&body.data)?;
        let name = fields.char("name", Char::OPTIONAL.max(100));
        // Stricter than DRF's CharField (which takes numbers): this view is ours, and its
        // schema says a string.
        if fields.data.get("name").is_some_and(|v| v.is_number()) {
            fields.errors.add("name", crate::api::fields::NOT_A_STRING);
        }
        fields.errors.into_result()?;
        let token = self.state.accounts.create_token_for(&caller, &name, &caller.origin()).await?;
        Ok(CreatedToken::Created(Json(TokenBody { token })))
    }

    /// List my tokens
    ///
    /// Never the keys themselves. Newest first, paginated as `GET /users/`.
    #[oai(path = "/tokens/", method = "get", operation_id = "tokens_list", tag = "ApiTags::Token")]
    async fn list_tokens(
        &self,
        caller: Authed,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page_size: Query<Option<u64>>,
    ) -> Result<Json<Page<TokenInfo>>, ApiError> {
        let request = PageRequest::new(page.0, page_size.0);
        let (rows, count) =
            tokens::page_for_user(&self.state.db, caller.user.id, request.page - 1, request.size).await?;
        request.check(count)?;
        let results = rows
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                name: t.name,
                created: t.created_at,
                last_used: t.last_used,
                expires: t.expires_at,
            })
            .collect();
        Ok(Json(request.page("/tokens/", count, "", results)))
    }

    /// Revoke one of my tokens
    ///
    /// 404 when the id is not one of the caller's tokens.
    #[oai(path = "/tokens/:id/", method = "delete", operation_id = "tokens_delete", tag = "ApiTags::Token")]
    async fn delete_token(&self, caller: Authed, id: Path<String>) -> Result<Deleted, ApiError> {
        let id: i64 = id.parse().map_err(|_| ApiError::NotFound)?;
        if !self.state.accounts.revoke_token(&caller.user, id, &caller.origin()).await? {
            return Err(ApiError::NotFound);
        }
        Ok(Deleted::NoContent)
    }

    /// Obtain a JWT pair (simplejwt's `TokenObtainPairView`)
    ///
    /// For a user with a second factor, a right password answers `{"mfa_required": true,
    /// "ephemeral_token"}`: `POST /mfa/verify/` with a code issues the pair (claim `aal` 2).
    #[oai(path = "/api/token/", method = "post", operation_id = "jwt_obtain", tag = "ApiTags::Jwt")]
    async fn jwt_obtain(
        &self,
        caller: MaybeAuthed,
        jar: &CookieJar,
        body: DrfBody<PairRequest>,
    ) -> Result<Json<PairAnswer>, ApiError> {
        let (username, password) = credentials(&body.data)?;
        let pair = self.state.accounts.obtain_jwt(&username, &password, &caller.origin()).await.map_err(|e| {
            let refused = ApiError::Body {
                status: StatusCode::UNAUTHORIZED,
                body: json!({"detail": "No active account found with the given credentials"}),
                challenge: Some(BEARER_CHALLENGE.into()),
            };
            login_error(e, refused)
        })?;
        Ok(Json(match self.with_device(jar, pair) {
            Ok(pair) => PairAnswer::Pair(PairBody { refresh: pair.refresh, access: pair.access }),
            Err(pending) => PairAnswer::MfaRequired(pending),
        }))
    }

    /// Refresh a JWT (simplejwt's `TokenRefreshView`)
    ///
    /// With `jwt.rotate_refresh_tokens`, also a new refresh token; the old one is spent, and
    /// presenting a spent one again revokes every token descended from the same login.
    #[oai(path = "/api/token/refresh/", method = "post", operation_id = "jwt_refresh", tag = "ApiTags::Jwt")]
    async fn jwt_refresh(
        &self,
        caller: MaybeAuthed,
        body: DrfBody<RefreshRequest>,
    ) -> Result<Json<RefreshBody>, ApiError> {
        let token = required(&body.data, "refresh")?;
        let done = self.state.accounts.refresh_jwt(&token, &caller.origin()).await.map_err(jwt_error)?;
        Ok(Json(RefreshBody { access: done.access, refresh: done.refresh }))
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
    async fn jwt_blacklist(
        &self,
        caller: MaybeAuthed,
        body: DrfBody<RefreshRequest>,
    ) -> Result<EmptyResponse, ApiError> {
        let token = required(&body.data, "refresh")?;
        self.state.accounts.blacklist_jwt(&token, &caller.origin()).await.map_err(jwt_error)?;
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
