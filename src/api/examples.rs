//! The seed's example views: protected pages, profile, permissions, cookies.
use poem::web::cookie::CookieJar;
use poem_openapi::{Object, OpenApi, payload::Json};

use super::{ApiTags, MessageBody, admin::UserRow, caller::Authed, cookies, serde_json_body::SerdeJson};
use crate::{error::ApiError, state::AppState};

pub struct ExamplesApi {
    pub state: std::sync::Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct ProfileBody {
    pub username: String,
    pub email: String,
}

#[derive(Debug, Object)]
pub struct WhoAmI {
    #[oai(flatten)]
    pub user: UserRow,
    /// Which authenticator vouched for the request: session, token, jwt or basic.
    pub auth: String,
    /// How the credential was obtained: 1 with a password, 2 with a second factor too.
    pub aal: i16,
}

#[derive(Debug, Object)]
pub struct CookieValue {
    /// The `token` cookie's value, or "No token".
    pub token: String,
}

fn message(text: String) -> SerdeJson<MessageBody> {
    SerdeJson(MessageBody { message: text })
}

#[OpenApi(tag = "ApiTags::Examples")]
impl ExamplesApi {
    /// A protected view
    ///
    /// The seed's `protected_view`: any authenticated user (`auth.default_permission`).
    #[oai(path = "/protected/", method = "get", operation_id = "protected")]
    async fn protected(&self, caller: Authed) -> Result<SerdeJson<MessageBody>, ApiError> {
        let user = &caller.user;
        Ok(message(format!("Hello, {}! You have access to this view.", user.username)))
    }

    /// A dashboard
    #[oai(path = "/dashboard/", method = "get", operation_id = "dashboard")]
    async fn dashboard(&self, caller: Authed) -> Result<SerdeJson<MessageBody>, ApiError> {
        let user = &caller.user;
        Ok(message(format!("Hello {}, welcome to your dashboard", user.username)))
    }

    /// My profile (token authentication only)
    ///
    /// This view's chain is `["token"]` (DRF's per-view `authentication_classes`): a
    /// session cookie is not enough, and an anonymous call gets 401 `WWW-Authenticate: Token`.
    #[oai(path = "/profile/", method = "get", operation_id = "profile", tag = "ApiTags::Token")]
    async fn profile(&self, caller: Authed) -> Result<Json<ProfileBody>, ApiError> {
        let user = &caller.user;
        Ok(Json(ProfileBody { username: user.username.clone(), email: user.email.clone() }))
    }

    /// Who am I
    #[oai(path = "/whoami/", method = "get", operation_id = "whoami", tag = "ApiTags::Account")]
    async fn whoami(&self, caller: Authed) -> Result<Json<WhoAmI>, ApiError> {
        let user = UserRow::from(caller.user.as_ref());
        Ok(Json(WhoAmI { user, auth: caller.method.as_str().to_owned(), aal: caller.aal.level() }))
    }

    /// Publish (needs `articles.can_publish`)
    ///
    /// Allowed to users holding the Django-style permission `articles.can_publish`
    /// directly or through a group, and to superusers.
    #[oai(path = "/publish/", method = "post", operation_id = "publish")]
    async fn publish(&self, caller: Authed) -> Result<SerdeJson<MessageBody>, ApiError> {
        let user = &caller.user;
        Ok(message(format!("Article published by {}", user.username)))
    }

    /// Set the example cookie
    ///
    /// The seed's `SetCookieView`: sets `token=example_cookie_value` for an hour.
    #[oai(path = "/cookie/set/", method = "get", operation_id = "cookie_set")]
    async fn cookie_set(&self, jar: &CookieJar) -> SerdeJson<MessageBody> {
        jar.add(cookies::lasting("token", "example_cookie_value", 3600));
        message("Cookie set!".into())
    }

    /// Read the example cookie
    #[oai(path = "/cookie/get/", method = "get", operation_id = "cookie_get")]
    async fn cookie_get(&self, jar: &CookieJar) -> Json<CookieValue> {
        let token = jar.get("token").map_or_else(|| "No token".to_owned(), |c| c.value_str().to_owned());
        Json(CookieValue { token })
    }

    /// Delete the example cookie
    #[oai(path = "/cookie/delete/", method = "get", operation_id = "cookie_delete")]
    async fn cookie_delete(&self, jar: &CookieJar) -> SerdeJson<MessageBody> {
        jar.add(cookies::removal("token", &self.state.settings));
        message("Cookie deleted!".into())
    }
}
