//! simplejwt's token_blacklist tables: outstanding refresh tokens (by `jti` only) and the
//! blacklist.
pub mod outstanding {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jwt_outstanding_token")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub jti: String,
        pub user_id: i64,
        pub family_id: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub rotated_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_one = "super::blacklisted::Entity")]
        Blacklisted,
    }

    impl Related<super::blacklisted::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Blacklisted.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod blacklisted {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jwt_blacklisted_token")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub token_id: i64,
        pub blacklisted_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::outstanding::Entity",
            from = "Column::TokenId",
            to = "super::outstanding::Column::Id"
        )]
        Outstanding,
    }

    impl Related<super::outstanding::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Outstanding.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Server secrets shared by every instance (the generated HS256 key).
pub mod secret {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "server_secret")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub value: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
