//! Account endpoints: registration.
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json, types::Example};

use super::{
    ApiTags,
    body::DrfBody,
    caller::MaybeAuthed,
    fields::{Char, Fields},
};
use crate::{
    error::ApiError,
    service::users::{MAX_PASSWORD, NewUser},
    state::AppState,
};

pub struct AccountApi {
    pub state: std::sync::Arc<AppState>,
}

/// A new account. Only `username` and `password` are required.
#[derive(Debug, Object)]
#[oai(example)]
pub struct RegisterRequest {
    /// 150 characters or fewer: letters, digits and @/./+/-/_ only. Unique, ignoring case.
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub username: String,
    /// Checked by Django's four default validators (similarity to the other fields, at
    /// least 8 characters, not a common password, not entirely numeric).
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub password: String,
    #[oai(validator(pattern = r"^[^\x00]*$"))]
    pub email: Option<String>,
    #[oai(validator(pattern = r"^[^\x00]*$"))]
    pub first_name: Option<String>,
    #[oai(validator(pattern = r"^[^\x00]*$"))]
    pub last_name: Option<String>,
}

impl Example for RegisterRequest {
    fn example() -> Self {
        Self {
            username: "john".into(),
            password: "correct-horse-battery".into(),
            email: Some("john@example.com".into()),
            first_name: None,
            last_name: None,
        }
    }
}

/// The public fields of a user.
#[derive(Debug, Object)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub email: String,
}

#[derive(Debug, Object)]
pub struct RegisterBody {
    /// Always "User created successfully".
    pub message: String,
    pub user: UserSummary,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The user was created.
    #[oai(status = 201)]
    Created(Json<RegisterBody>),
}

#[OpenApi(tag = "ApiTags::Account")]
impl AccountApi {
    /// Create an account
    ///
    /// As the seed's `register_user` view, with what it leaves out: Django's username rules
    /// and password validators, and DRF's field errors. Answers 400 with a field map such as
    /// `{"password": ["This password is too common."]}`.
    #[oai(path = "/register/", method = "post", operation_id = "register")]
    async fn register(
        &self,
        caller: MaybeAuthed,
        body: DrfBody<RegisterRequest>,
    ) -> Result<RegisterResponse, ApiError> {
        caller.refuse_foreign_origin(&self.state.settings)?;
        let mut fields = Fields::new(&body.data)?;
        let new = NewUser {
            username: fields
                .char("username", Char { required: true, allow_blank: true, trim: false, max_length: None }),
            email: fields.char("email", Char::OPTIONAL),
            password: fields.char("password", Char::PASSWORD.max(MAX_PASSWORD)),
            first_name: fields.char("first_name", Char::OPTIONAL),
            last_name: fields.char("last_name", Char::OPTIONAL),
            ..NewUser::default()
        };
        let state = &self.state;
        let user = state.accounts.register(new, fields.errors, &caller.origin()).await?;
        Ok(RegisterResponse::Created(Json(RegisterBody {
            message: "User created successfully".into(),
            user: UserSummary { id: user.id, username: user.username, email: user.email },
        })))
    }
}
