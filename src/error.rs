//! The one error type. Every failure, the framework's own included, leaves the server as a
//! JSON body in DRF's shape: `{"detail": ...}`, a field map, or the body an endpoint's DRF
//! original sends (login's `{"error": ...}`, simplejwt's `{"detail", "code"}`).
use poem::{
    Response,
    http::{HeaderValue, Method, StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object,
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};
use serde_json::{Value, json};

use crate::authn::{Failure, Refused};
pub use crate::service::FieldErrors;
use crate::service::{
    jwt::{JwtError, TokenError},
    sessions::DataError,
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a field map.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 400 for a body that cannot be parsed (DRF's `ParseError`).
    #[error("parse error")]
    Parse(String),
    /// 401 with `WWW-Authenticate: <challenge>` when the view's first authenticator has a
    /// challenge, else 403 (DRF's `NotAuthenticated` / `AuthenticationFailed`).
    #[error("not authenticated")]
    Unauthenticated { detail: String, challenge: Option<String> },
    #[error("permission denied")]
    PermissionDenied(String),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed(Method),
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    #[error("payload too large")]
    PayloadTooLarge(usize),
    /// 429 with `Retry-After` (seconds, rounded up as DRF does).
    #[error("throttled")]
    Throttled { wait: u64 },
    /// 503: the database (or another backing service) did not answer.
    #[error("service unavailable")]
    Unavailable(String),
    /// Any other status with the exact body a DRF original sends.
    #[error("error response")]
    Body { status: StatusCode, body: Value, challenge: Option<String> },
    /// 500: logged with its cause, never echoed.
    #[error("internal error: {0}")]
    Internal(String),
}

pub const NOT_AUTHENTICATED: &str = "Authentication credentials were not provided.";
/// simplejwt's challenge, on its 401s.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"api\"";
pub const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";
/// dj-rest-auth's refusal of a right password under allauth's mandatory verification.
pub const EMAIL_NOT_VERIFIED: &str = "E-mail is not verified.";
/// A sensitive action (or Basic authentication) by a user whose second factor is missing or stale.
pub const SECOND_FACTOR_REQUIRED: &str = "Second factor required.";

/// The body of every `mfa_required` refusal.
pub fn second_factor_body() -> Value {
    json!({"detail": SECOND_FACTOR_REQUIRED, "code": "mfa_required"})
}

impl ApiError {
    /// The one answer of every door that takes a password to an unverified user under
    /// `account.email_verification = "mandatory"`, whatever its answer to a wrong password.
    pub fn email_not_verified() -> Self {
        Self::Validation(FieldErrors::single("non_field_errors", EMAIL_NOT_VERIFIED))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::Parse(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated { challenge: Some(_), .. } => StatusCode::UNAUTHORIZED,
            Self::Unauthenticated { challenge: None, .. } | Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Body { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> Value {
        let detail = |s: &str| json!({ "detail": s });
        match self {
            Self::Validation(errors) => errors.to_json(),
            Self::Parse(reason) => detail(reason),
            Self::Unauthenticated { detail: d, .. } | Self::PermissionDenied(d) => detail(d),
            Self::NotFound => detail("Not found."),
            Self::MethodNotAllowed(m) => detail(&format!("Method \"{m}\" not allowed.")),
            Self::UnsupportedMediaType(t) => detail(&format!("Unsupported media type \"{t}\" in request.")),
            Self::PayloadTooLarge(limit) => detail(&format!("Request body is larger than the limit of {limit} bytes.")),
            Self::Throttled { wait } => {
                let unit = if *wait == 1 { "second" } else { "seconds" };
                detail(&format!("Request was throttled. Expected available in {wait} {unit}."))
            }
            Self::Unavailable(_) => detail("The service is temporarily unavailable; try again shortly."),
            Self::Body { body, .. } => body.clone(),
            Self::Internal(_) => detail("A server error occurred."),
        }
    }

    /// The response, with the headers DRF adds (`WWW-Authenticate`, `Retry-After`).
    pub fn to_response(&self) -> Response {
        match self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(%cause, "backing service unavailable"),
            _ => {}
        }
        let mut resp = json_response(self.status(), &self.body());
        let challenge = match self {
            Self::Unauthenticated { challenge, .. } | Self::Body { challenge, .. } => challenge.as_deref(),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        if let Self::Throttled { wait } = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*wait));
        }
        resp
    }
}

/// A JSON response with DRF's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn as_response(&self) -> Response {
        self.to_response()
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Self::Unavailable(err.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<crate::password::HashError> for ApiError {
    fn from(err: crate::password::HashError) -> Self {
        Self::Internal(err.to_string())
    }
}

/// simplejwt's 401s: `{"detail", "code"}` with the Bearer challenge.
pub fn jwt_error(err: JwtError) -> ApiError {
    let body = match err {
        JwtError::Db(e) => return e.into(),
        JwtError::Signing(e) => return ApiError::Internal(e.to_string()),
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

/// A refusal by the authenticator chain, as DRF words and codes it.
impl From<Refused> for ApiError {
    fn from(Refused { failure, challenge }: Refused) -> Self {
        match failure {
            Failure::Credentials(detail) => Self::Unauthenticated { detail, challenge },
            Failure::Detailed(body) => {
                let status = if challenge.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
                Self::Body { status, body, challenge }
            }
            Failure::Throttled(wait) => Self::Throttled { wait },
            Failure::EmailNotVerified => Self::email_not_verified(),
            Failure::Csrf(reason) => Self::PermissionDenied(format!("CSRF Failed: {reason}")),
            Failure::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<DataError> for ApiError {
    fn from(err: DataError) -> Self {
        match err {
            DataError::Db(e) => e.into(),
            DataError::Contended => Self::Unavailable(err.to_string()),
            DataError::TooLarge(_) => Self::Validation(FieldErrors::single("non_field_errors", err.to_string())),
        }
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(err: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError;
        match err {
            ServiceError::Invalid(errors) => Self::Validation(errors),
            ServiceError::NotFound(_) => Self::NotFound,
            ServiceError::Db(e) => e.into(),
            ServiceError::Hash(e) => e.into(),
            ServiceError::Signing(e) => Self::Internal(e.to_string()),
            ServiceError::Unavailable(cause) => Self::Unavailable(cause),
            ServiceError::Conflict(detail) => {
                Self::Body { status: StatusCode::CONFLICT, body: json!({ "detail": detail }), challenge: None }
            }
            ServiceError::SecondFactorRequired => {
                Self::Body { status: StatusCode::FORBIDDEN, body: second_factor_body(), challenge: None }
            }
        }
    }
}

/// Turns whatever error reached the outermost layer (ours, poem's router, a middleware's)
/// into DRF's JSON; nothing leaves as plain text.
pub fn to_drf_response(err: poem::Error, method: &Method, body_limit: usize) -> Response {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.to_response();
    }
    let status = err.status();
    let mapped = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(method.clone()),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(body_limit),
        s if s.is_server_error() => ApiError::Internal(err.to_string()),
        s => ApiError::Body { status: s, body: json!({ "detail": err.to_string() }), challenge: None },
    };
    mapped.to_response()
}

/// `{"detail": "..."}`: the body of every non-field error.
#[derive(Debug, Object)]
pub struct ErrorDetail {
    /// A human-readable message (DRF's exact wording).
    pub detail: String,
}

/// The error responses every endpoint can give, documented once.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let json = |schema| vec![MetaMediaType { content_type: "application/json", schema }];
        let header = |name: &str, description: &str| MetaHeader {
            name: name.to_owned(),
            description: Some(description.to_owned()),
            required: false,
            deprecated: false,
            schema: String::schema_ref(),
        };
        let response = |status: u16, description: &'static str| MetaResponse {
            description,
            status: Some(status),
            status_range: None,
            content: json(ErrorDetail::schema_ref()),
            headers: vec![],
        };
        MetaResponses {
            responses: vec![
                MetaResponse {
                    content: json(ErrorBody::schema_ref()),
                    ..response(
                        400,
                        "Invalid input: a field map such as `{\"username\": [\"This field is required.\"]}`, `{\"detail\": \"JSON parse error - ...\"}`, or login's `{\"error\": \"Invalid credentials\"}`",
                    )
                },
                MetaResponse {
                    content: json(ErrorBody::schema_ref()),
                    headers: vec![header(
                        "WWW-Authenticate",
                        "The first authenticator's challenge: `Token`, `Bearer realm=\"api\"` or `Basic realm=\"api\"`",
                    )],
                    ..response(
                        401,
                        "Not authenticated, or bad credentials, when the view's first authenticator has a challenge (DRF); simplejwt's errors carry `code` and `messages`",
                    )
                },
                response(
                    403,
                    "Not authenticated when the first authenticator is the session (DRF's 403), `CSRF Failed: ...`, `You do not have permission to perform this action.`, or `{\"detail\": \"Second factor required.\", \"code\": \"mfa_required\"}` (a sensitive action needs a second factor within `mfa.step_up_age`: `POST /mfa/step-up/`)",
                ),
                response(404, "`Not found.`"),
                response(405, "`Method \"X\" not allowed.`"),
                response(413, "The body is larger than `server.max_body_bytes`"),
                response(415, "The body is neither JSON nor form-encoded"),
                MetaResponse {
                    headers: vec![header("Retry-After", "Seconds until the next attempt may succeed")],
                    ..response(429, "`Request was throttled. Expected available in N seconds.`")
                },
                response(
                    503,
                    "The database (or the shared throttle store) did not answer, or TOTP secrets cannot be opened (no MFA key)",
                ),
            ],
        }
    }

    fn register(registry: &mut Registry) {
        ErrorDetail::register(registry);
        ErrorBody::register(registry);
    }
}

/// Any JSON object: DRF's field map (`{"field": ["message", ...]}`), `{"detail": ...}`, or
/// simplejwt's `{"detail", "code", "messages"}`.
pub type ErrorBody = std::collections::HashMap<String, Value>;
