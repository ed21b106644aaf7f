//! `POST /introspect/` (RFC 7662): services behind portcullis ask whether a token their
//! client sent is live. The caller is a service account holding `portcullis.introspect`
//! (the policy table); the answer comes from `service::introspection`.
use poem_openapi::{Object, OpenApi, payload::Json, types::Example};

use serde_json::Value;

use super::{
    ApiTags,
    body::DrfBody,
    caller::Authed,
    fields::{Char, Fields, NOT_A_STRING},
};
use crate::{
    error::ApiError,
    service::introspection::{self, Active},
    state::AppState,
};

pub struct IntrospectApi {
    pub state: std::sync::Arc<AppState>,
}

/// RFC 7662's request, form-encoded (or JSON).
#[derive(Debug, Object)]
#[oai(example)]
pub struct IntrospectRequest {
    /// A DRF token key, an access JWT or a refresh JWT.
    #[oai(validator(min_length = 1, pattern = r"^[^\x00]*$"))]
    pub token: String,
    /// `access_token`, `refresh_token` (RFC 7662) or `token`; optional, and not needed: the
    /// token says what it is.
    #[oai(validator(pattern = r"^[^\x00]*$"))]
    pub token_type_hint: Option<String>,
}

impl Example for IntrospectRequest {
    fn example() -> Self {
        Self { token: "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b".into(), token_type_hint: None }
    }
}

/// `{"active": false}` for anything not live; the rest only for a live token.
#[derive(Debug, Object)]
#[oai(example)]
pub struct IntrospectionBody {
    pub active: bool,
    /// The user's id, as a string (simplejwt's `user_id`).
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub username: Option<String>,
    /// `token` (DRF), `access` or `refresh` (JWT).
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
    /// Unix time it expires; absent for a DRF token that never does.
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    /// Unix time it was issued.
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
}

impl Example for IntrospectionBody {
    fn example() -> Self {
        Self {
            active: true,
            sub: Some("1".into()),
            username: Some("john".into()),
            token_type: Some("access".into()),
            exp: Some(1_764_000_300),
            iat: Some(1_764_000_000),
        }
    }
}

impl IntrospectionBody {
    fn inactive() -> Self {
        Self { active: false, sub: None, username: None, token_type: None, exp: None, iat: None }
    }
}

impl From<Active> for IntrospectionBody {
    fn from(a: Active) -> Self {
        Self {
            active: true,
            sub: Some(a.user.id.to_string()),
            username: Some(a.user.username),
            token_type: Some(a.token_type.to_owned()),
            exp: a.exp,
            iat: a.iat,
        }
    }
}

/// The token, as DRF's `CharField`s read the two fields (no trimming: a token is taken as
/// sent), except that a token or hint must be a string: a number is no token.
fn parse(data: &Value) -> Result<String, ApiError> {
    let mut fields = Fields::new(data)?;
    let token = fields.char("token", Char::PASSWORD);
    fields.char("token_type_hint", Char::OPTIONAL);
    for name in ["token", "token_type_hint"] {
        if fields.data.get(name).is_some_and(Value::is_number) {
            fields.errors.add(name, NOT_A_STRING);
        }
    }
    fields.errors.into_result()?;
    Ok(token)
}

#[OpenApi(tag = "ApiTags::Services")]
impl IntrospectApi {
    /// Is this token live? (RFC 7662)
    ///
    /// For services behind portcullis that receive a token and want to check it now: a DRF
    /// token, an access JWT or a refresh JWT. Always 200: `{"active": true, "sub", "username",
    /// "token_type", "exp", "iat"}` for a live one, `{"active": false}` for anything else
    /// (unknown, revoked, expired, malformed, its user inactive or their password changed
    /// since). Read from the database on every call, never from a cache: an answer never
    /// outlives a revocation. The caller authenticates as a service account (any
    /// authenticator of `auth.chain`, or Basic) that holds `portcullis.introspect`
    /// (`portcullis grant SERVICE portcullis.introspect`).
    #[oai(path = "/introspect/", method = "post", operation_id = "introspect")]
    async fn introspect(
        &self,
        _caller: Authed,
        body: DrfBody<IntrospectRequest>,
    ) -> Result<Json<IntrospectionBody>, ApiError> {
        let token = parse(&body.data)?;
        let found = introspection::introspect(&self.state.db, &self.state.jwt, &token).await?;
        Ok(Json(found.map_or_else(IntrospectionBody::inactive, IntrospectionBody::from)))
    }
}
