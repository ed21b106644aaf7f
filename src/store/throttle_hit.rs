//! `throttle_hit`: failed password checks, shared by every instance (`throttle.backend = "database"`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "throttle_hit")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub scope_key: String,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
