//! Reading the audit trail (writing is `crate::audit`).
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Select};

use crate::store::audit;

/// Filters of `GET /audit/` and `portcullis audit`.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub event: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

fn query(filter: &Filter) -> Select<audit::Entity> {
    let mut q = audit::Entity::find();
    if let Some(id) = filter.user_id {
        q = q.filter(audit::Column::UserId.eq(id));
    }
    if let Some(name) = &filter.username {
        q = q.filter(audit::Column::Username.eq(name.as_str()));
    }
    if let Some(event) = &filter.event {
        q = q.filter(audit::Column::Event.eq(event.as_str()));
    }
    if let Some(since) = filter.since {
        q = q.filter(audit::Column::At.gte(since));
    }
    if let Some(until) = filter.until {
        q = q.filter(audit::Column::At.lt(until));
    }
    q.order_by_desc(audit::Column::At).order_by_desc(audit::Column::Id)
}

/// One page (from 0) of matching events, newest first, and the total count.
pub async fn page(
    db: &impl ConnectionTrait,
    filter: &Filter,
    page: u64,
    size: u64,
) -> Result<(Vec<audit::Model>, u64), DbErr> {
    let pages = query(filter).paginate(db, size);
    let count = pages.num_items().await?;
    // A page past the end (or whose offset overflows) has no rows; the caller answers 404.
    if page.checked_mul(size).is_none_or(|offset| offset >= count) {
        return Ok((Vec::new(), count));
    }
    Ok((pages.fetch_page(page).await?, count))
}
