//! `auth_token`: opaque API tokens, keyed by the digest of the key.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_token")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub key_digest: Vec<u8>,
    pub user_id: i64,
    pub name: String,
    pub created_at: DateTimeUtc,
    pub last_used: Option<DateTimeUtc>,
    pub expires_at: Option<DateTimeUtc>,
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
