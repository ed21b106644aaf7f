//! `auth_session`: server-side sessions, keyed by the digest of the cookie value.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_session")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub key_digest: Vec<u8>,
    #[sea_orm(unique)]
    pub public_id: String,
    pub user_id: i64,
    pub auth_stamp: String,
    pub data: String,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub last_seen: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Assurance level: 1 (a password), 2 (and a second factor, last proven at `aal_at`).
    pub aal: i16,
    pub aal_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::user::Entity", from = "Column::UserId", to = "super::user::Column::Id")]
    User,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
