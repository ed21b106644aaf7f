//! Staff endpoints.
use chrono::{DateTime, Utc};
use poem_openapi::{Object, OpenApi, param::Query, payload::Json};
use sea_orm::{EntityTrait, PaginatorTrait, QueryOrder};

use super::{
    ApiTags,
    caller::Authed,
    pagination::{Page, PageRequest},
};
use crate::{error::ApiError, state::AppState, store::user};

pub struct AdminApi {
    pub state: std::sync::Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    #[oai(nullable)]
    pub last_login: Option<DateTime<Utc>>,
    pub date_joined: DateTime<Utc>,
}

impl From<&user::Model> for UserRow {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            is_active: u.is_active,
            is_staff: u.is_staff,
            is_superuser: u.is_superuser,
            last_login: u.last_login,
            date_joined: u.date_joined,
        }
    }
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// List users (staff)
    ///
    /// Paginated as DRF's `PageNumberPagination`: `?page=N` (from 1) and `?page_size=N`
    /// (default 100, at most 1000). A page past the end is 404 `Invalid page.`.
    #[oai(path = "/users/", method = "get", operation_id = "users_list")]
    async fn users(
        &self,
        _caller: Authed,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page: Query<Option<u64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000000")))] page_size: Query<Option<u64>>,
    ) -> Result<Json<Page<UserRow>>, ApiError> {
        let request = PageRequest::new(page.0, page_size.0);
        let pages = user::Entity::find().order_by_asc(user::Column::Id).paginate(&self.state.db, request.size);
        let count = pages.num_items().await?;
        request.check(count)?;
        let rows = pages.fetch_page(request.page - 1).await?;
        Ok(Json(request.page("/users/", count, "", rows.iter().map(UserRow::from).collect())))
    }
}
