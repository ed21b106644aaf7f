//! Account recovery by email: dj-rest-auth's password reset views and its registration app's
//! email verification views, with their bodies and messages.
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Example};

use super::{
    ApiTags,
    body::DrfBody,
    caller::MaybeAuthed,
    fields::{Char, Fields},
};
use crate::{
    error::ApiError,
    service::{
        accounts::{RecoveryError, ResetConfirmation},
        users::MAX_PASSWORD,
    },
    state::AppState,
};

pub struct RecoveryApi {
    pub state: std::sync::Arc<AppState>,
}

/// The address to send a reset link to.
#[derive(Debug, Object)]
#[oai(example)]
pub struct PasswordResetRequest {
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub email: String,
}

impl Example for PasswordResetRequest {
    fn example() -> Self {
        Self { email: "john@example.com".into() }
    }
}

/// What the reset link carried, and the new password twice.
#[derive(Debug, Object)]
#[oai(example)]
pub struct PasswordResetConfirmRequest {
    /// The link's `{uid}`.
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub uid: String,
    /// The link's `{token}`.
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub token: String,
    /// Checked by Django's validators, as at registration.
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub new_password1: String,
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub new_password2: String,
}

impl Example for PasswordResetConfirmRequest {
    fn example() -> Self {
        Self {
            uid: "MQ".into(),
            token: "cz8wpe-2ba1d6d1d0a3f6a1e8e25ef8e5a07c43".into(),
            new_password1: "tr0ub4dor-and-3-more".into(),
            new_password2: "tr0ub4dor-and-3-more".into(),
        }
    }
}

/// The verification link's `{key}`.
#[derive(Debug, Object)]
#[oai(example)]
pub struct VerifyEmailRequest {
    /// Surrounding whitespace is trimmed (DRF's CharField, Python's `str.strip()`): a key of
    /// whitespace alone is blank. The pattern names Python's whitespace one by one, as regex
    /// dialects disagree on `\s`.
    #[oai(validator(
        min_length = 1,
        pattern = r"^[^\x00]*[^\x00\t\n\x0B\x0C\r\x1C-\x20\x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\x00]*$"
    ))]
    pub key: String,
}

impl Example for VerifyEmailRequest {
    fn example() -> Self {
        Self { key: "MQ.cz8wpe.5d41402abc4b2a76b9719d911017c592".into() }
    }
}

/// `{"detail": "..."}`
#[derive(Debug, Object)]
pub struct DetailBody {
    pub detail: String,
}

#[derive(ApiResponse)]
pub enum DetailResponse {
    #[oai(status = 200)]
    Ok(Json<DetailBody>),
}

fn detail(text: &str) -> DetailResponse {
    DetailResponse::Ok(Json(DetailBody { detail: text.to_owned() }))
}

/// One required field of a body (a `CharField`), or DRF's 400.
fn field(data: &serde_json::Value, name: &str, spec: Char) -> Result<String, ApiError> {
    let mut fields = Fields::new(data)?;
    let value = fields.char(name, spec);
    fields.errors.into_result()?;
    Ok(value)
}

fn refused(e: RecoveryError) -> ApiError {
    match e {
        RecoveryError::Throttled(wait) => ApiError::Throttled { wait },
        RecoveryError::Service(e) => e.into(),
    }
}

#[OpenApi(tag = "ApiTags::Account")]
impl RecoveryApi {
    /// Ask for a password reset link
    ///
    /// dj-rest-auth's `PasswordResetView`. The same answer, in the same time, for every
    /// address: a mail with a link (`email.password_reset_url`) goes, in the background, to
    /// each active user with that email and a usable password. Throttled per address and per
    /// client IP (429).
    #[oai(path = "/password/reset/", method = "post", operation_id = "password_reset")]
    async fn password_reset(
        &self,
        caller: MaybeAuthed,
        body: DrfBody<PasswordResetRequest>,
    ) -> Result<DetailResponse, ApiError> {
        let email = field(&body.data, "email", Char::REQUIRED)?;
        self.state.accounts.request_password_reset(&email, &caller.origin()).await.map_err(refused)?;
        Ok(detail("Password reset e-mail has been sent."))
    }

    /// Set a new password with a reset link
    ///
    /// dj-rest-auth's `PasswordResetConfirmView`, with Django's token: it works once, and not
    /// after the password changed, the user logged in, or `email.password_reset_timeout`.
    /// Every session, token and JWT of the user stops working. 400 `{"uid": ["Invalid
    /// value"]}`, `{"token": ["Invalid value"]}`, or `new_password2` errors.
    #[oai(path = "/password/reset/confirm/", method = "post", operation_id = "password_reset_confirm")]
    async fn password_reset_confirm(
        &self,
        caller: MaybeAuthed,
        body: DrfBody<PasswordResetConfirmRequest>,
    ) -> Result<DetailResponse, ApiError> {
        let mut fields = Fields::new(&body.data)?;
        let confirmation = ResetConfirmation {
            uid: fields.char("uid", Char::REQUIRED),
            token: fields.char("token", Char::REQUIRED),
            new_password1: fields.char("new_password1", Char::PASSWORD.max(MAX_PASSWORD)),
            new_password2: fields.char("new_password2", Char::PASSWORD.max(MAX_PASSWORD)),
        };
        fields.errors.into_result()?;
        self.state.accounts.confirm_password_reset(confirmation, &caller.origin()).await?;
        Ok(detail("Password has been reset with the new password."))
    }

    /// Verify an email address
    ///
    /// dj-rest-auth's `VerifyEmailView`: the key from the verification link
    /// (`email.verify_email_url`). 404 for a key that is unknown, expired or already used.
    #[oai(path = "/registration/verify-email/", method = "post", operation_id = "verify_email")]
    async fn verify_email(
        &self,
        caller: MaybeAuthed,
        body: DrfBody<VerifyEmailRequest>,
    ) -> Result<DetailResponse, ApiError> {
        let key = field(&body.data, "key", Char::REQUIRED)?;
        self.state.accounts.verify_email(&key, &caller.origin()).await?;
        Ok(detail("ok"))
    }

    /// Send the verification mail again
    ///
    /// dj-rest-auth's `ResendEmailVerificationView`: the same answer for every address; a mail
    /// goes, in the background, to each active user with that address not yet verified.
    /// Throttled as the reset request.
    #[oai(path = "/registration/resend-email/", method = "post", operation_id = "resend_email")]
    async fn resend_email(
        &self,
        caller: MaybeAuthed,
        body: DrfBody<PasswordResetRequest>,
    ) -> Result<DetailResponse, ApiError> {
        let email = field(&body.data, "email", Char::REQUIRED)?;
        self.state.accounts.resend_verification(&email, &caller.origin()).await.map_err(refused)?;
        Ok(detail("ok"))
    }
}
