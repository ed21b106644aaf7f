//! The second factor: enrolment, step-up, and the login's second step, plus the two-step
//! answers of the credential endpoints (documented as `oneOf`).
use poem::web::cookie::CookieJar;
use poem_openapi::{Object, OpenApi, Union, payload::Json, types::Example};

use super::{
    ApiTags, MessageBody,
    body::DrfBody,
    caller::{Authed, MaybeAuthed},
    cookies,
    fields::{Char, Fields},
    tokens::{Empty, PairBody, TokenBody},
};
use crate::{
    authn::csrf,
    error::ApiError,
    service::accounts::{Issued, MfaError, WithDevice},
    state::AppState,
};

pub struct MfaApi {
    pub state: std::sync::Arc<AppState>,
}

/// A right password of a user with a second factor: send the token and a code to
/// `POST /mfa/verify/` within `mfa.ephemeral_ttl` seconds to finish this login.
#[derive(Debug, Object)]
#[oai(example)]
pub struct MfaRequiredBody {
    /// Always true.
    pub mfa_required: bool,
    /// Single use; only a digest is stored.
    pub ephemeral_token: String,
}

impl Example for MfaRequiredBody {
    fn example() -> Self {
        Self { mfa_required: true, ephemeral_token: "5d0c0b8e".repeat(8) }
    }
}

/// `POST /login/`'s answer: logged in, or a second factor to send.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum LoginAnswer {
    LoggedIn(MessageBody),
    MfaRequired(MfaRequiredBody),
}

/// `POST /api-token-auth/`'s answer: a token, or a second factor to send.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum TokenAnswer {
    Token(TokenBody),
    MfaRequired(MfaRequiredBody),
}

/// `POST /api/token/`'s answer: a JWT pair, or a second factor to send.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum PairAnswer {
    Pair(PairBody),
    MfaRequired(MfaRequiredBody),
}

/// `POST /mfa/verify/`'s answer: what the endpoint that asked for the code gives.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum VerifyAnswer {
    /// From `POST /login/`: the session cookie (and a new `csrftoken`) are set.
    LoggedIn(MessageBody),
    /// From `POST /api-token-auth/`.
    Token(TokenBody),
    /// From `POST /api/token/`.
    Pair(PairBody),
}

/// A second-factor code.
#[derive(Debug, Object)]
#[oai(example)]
pub struct CodeRequest {
    /// The 6 digits an authenticator app shows now, or (but to activate) a recovery code.
    #[oai(validator(min_length = 1, max_length = 32, pattern = r"^[^\x00]*$"))]
    pub code: String,
}

impl Example for CodeRequest {
    fn example() -> Self {
        Self { code: "123456".into() }
    }
}

/// The ephemeral token a right password answered, and a code.
#[derive(Debug, Object)]
#[oai(example)]
pub struct MfaVerifyRequest {
    #[oai(validator(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$"))]
    pub ephemeral_token: String,
    /// A TOTP code (6 digits) or a recovery code (`xxxx-xxxx-xxxx`).
    #[oai(validator(min_length = 1, max_length = 32, pattern = r"^[^\x00]*$"))]
    pub code: String,
}

impl Example for MfaVerifyRequest {
    fn example() -> Self {
        Self { ephemeral_token: MfaRequiredBody::example().ephemeral_token, code: "123456".into() }
    }
}

#[derive(Debug, Object)]
pub struct MfaStatusBody {
    /// Whether logins ask for a TOTP code.
    pub totp: bool,
    pub recovery_codes_left: u64,
}

#[derive(Debug, Object)]
pub struct SetupBody {
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    /// `otpauth://totp/<issuer>:<username>?secret=...&issuer=...` (SHA-1, 6 digits, 30 s).
    pub otpauth_url: String,
    /// The URL as a QR code: an SVG document to inline in a page.
    pub qr_svg: String,
}

#[derive(Debug, Object)]
pub struct RecoveryCodesBody {
    /// Shown once: each works once, in place of a TOTP code. Only digests are stored.
    pub recovery_codes: Vec<String>,
    /// For a JWT caller: an access token at `aal` 2 (access tokens cannot change).
    #[oai(skip_serializing_if_is_none)]
    pub access: Option<String>,
}

#[derive(Debug, Object)]
pub struct SteppedBody {
    /// Always 2.
    pub aal: i16,
    /// For a JWT caller: an access token at `aal` 2 to use from now (the one sent stays at
    /// its level). Sessions and tokens are raised in place.
    #[oai(skip_serializing_if_is_none)]
    pub access: Option<String>,
}

fn mfa_error(e: MfaError) -> ApiError {
    match e {
        MfaError::Throttled(wait) => ApiError::Throttled { wait },
        MfaError::Service(e) => e.into(),
    }
}

/// The code field of a body (DRF's CharField).
fn code(data: &serde_json::Value) -> Result<String, ApiError> {
    let mut fields = Fields::new(data)?;
    let code = fields.char("code", Char::REQUIRED);
    fields.errors.into_result()?;
    Ok(code)
}

#[OpenApi(tag = "ApiTags::Mfa")]
impl MfaApi {
    /// My second factor
    #[oai(path = "/mfa/", method = "get", operation_id = "mfa_status")]
    async fn status(&self, caller: Authed) -> Result<Json<MfaStatusBody>, ApiError> {
        let status = self.state.accounts.mfa_status(&caller.user).await?;
        Ok(Json(MfaStatusBody { totp: status.totp, recovery_codes_left: status.recovery_codes_left }))
    }

    /// Start a TOTP setup
    ///
    /// A new secret for an authenticator app (scan `qr_svg` or open `otpauth_url`); not
    /// active until `POST /mfa/totp/activate/` confirms a first code. Calling it again
    /// replaces a pending setup. 400 while a TOTP is active.
    #[oai(path = "/mfa/totp/setup/", method = "post", operation_id = "mfa_totp_setup")]
    async fn setup(&self, caller: Authed, body: DrfBody<Empty, false>) -> Result<Json<SetupBody>, ApiError> {
        Fields::new(&body.data)?;
        let p = self.state.accounts.totp_setup(&caller).await?;
        Ok(Json(SetupBody { secret: p.secret, otpauth_url: p.otpauth_url, qr_svg: p.qr_svg }))
    }

    /// Activate TOTP with a first code
    ///
    /// Answers the 10 recovery codes, once. The credential making the request counts as
    /// `aal` 2 from now.
    #[oai(path = "/mfa/totp/activate/", method = "post", operation_id = "mfa_totp_activate")]
    async fn activate(&self, caller: Authed, body: DrfBody<CodeRequest>) -> Result<Json<RecoveryCodesBody>, ApiError> {
        let code = code(&body.data)?;
        let accounts = &self.state.accounts;
        let (codes, stepped) = accounts.totp_activate(&caller, &code, &caller.origin()).await.map_err(mfa_error)?;
        Ok(Json(RecoveryCodesBody { recovery_codes: codes, access: stepped.access }))
    }

    /// Deactivate TOTP
    ///
    /// A code (TOTP or recovery) proves the second factor now; the secret and the recovery
    /// codes are deleted, and logins ask for a password alone again.
    #[oai(path = "/mfa/totp/deactivate/", method = "post", operation_id = "mfa_totp_deactivate")]
    async fn deactivate(&self, caller: Authed, body: DrfBody<CodeRequest>) -> Result<Json<MessageBody>, ApiError> {
        let code = code(&body.data)?;
        self.state.accounts.totp_deactivate(&caller, &code, &caller.origin()).await.map_err(mfa_error)?;
        Ok(Json(MessageBody { message: "Second factor removed".into() }))
    }

    /// New recovery codes
    ///
    /// The old ones stop working. Needs a second factor within `mfa.step_up_age`
    /// (`POST /mfa/step-up/`), else 403 `mfa_required`.
    #[oai(path = "/mfa/recovery-codes/", method = "post", operation_id = "mfa_recovery_codes")]
    async fn recovery_codes(
        &self,
        caller: Authed,
        body: DrfBody<Empty, false>,
    ) -> Result<Json<RecoveryCodesBody>, ApiError> {
        Fields::new(&body.data)?;
        let codes = self.state.accounts.regenerate_recovery_codes(&caller, &caller.origin()).await?;
        Ok(Json(RecoveryCodesBody { recovery_codes: codes, access: None }))
    }

    /// Step up
    ///
    /// A code (TOTP or recovery) makes the credential of this request count as `aal` 2,
    /// obtained now: sensitive actions are allowed for `mfa.step_up_age` seconds.
    #[oai(path = "/mfa/step-up/", method = "post", operation_id = "mfa_step_up")]
    async fn step_up(&self, caller: Authed, body: DrfBody<CodeRequest>) -> Result<Json<SteppedBody>, ApiError> {
        let code = code(&body.data)?;
        let stepped = self.state.accounts.step_up(&caller, &code, &caller.origin()).await.map_err(mfa_error)?;
        Ok(Json(SteppedBody { aal: 2, access: stepped.access }))
    }

    /// Finish a login with a second factor
    ///
    /// For the `ephemeral_token` that `POST /login/`, `/api-token-auth/` or `/api/token/`
    /// answered: a TOTP code or a recovery code completes that login, once, with that
    /// endpoint's own answer at `aal` 2. Wrong codes count in the username's login throttle.
    #[oai(path = "/mfa/verify/", method = "post", operation_id = "mfa_verify")]
    async fn verify(
        &self,
        caller: MaybeAuthed,
        jar: &CookieJar,
        body: DrfBody<MfaVerifyRequest>,
    ) -> Result<Json<VerifyAnswer>, ApiError> {
        let settings = &self.state.settings;
        caller.refuse_foreign_origin(settings)?;
        let mut fields = Fields::new(&body.data)?;
        let ephemeral = fields.char("ephemeral_token", Char::REQUIRED);
        let code = fields.char("code", Char::REQUIRED);
        fields.errors.into_result()?;
        let presented = caller.identity.as_deref();
        let accounts = &self.state.accounts;
        let WithDevice { value, device } =
            accounts.complete_login(&ephemeral, &code, None, presented, &caller.origin()).await.map_err(mfa_error)?;
        if let Some(device) = device {
            jar.add(cookies::device(&device, settings));
        }
        Ok(Json(match value {
            Issued::Session(key) => {
                jar.add(cookies::session(&key, settings));
                jar.add(cookies::csrf(&csrf::new_secret(), settings));
                VerifyAnswer::LoggedIn(MessageBody { message: "Logged in successfully".into() })
            }
            Issued::Token(token) => VerifyAnswer::Token(TokenBody { token }),
            Issued::Jwt(pair) => VerifyAnswer::Pair(PairBody { refresh: pair.refresh, access: pair.access }),
        }))
    }
}
