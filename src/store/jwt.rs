//! simplejwt's token_blacklist tables: outstanding refresh tokens (by `jti` only) and the
//! blacklist; the server secrets; the signing keys kept in the database.
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

/// The JWT signing keys kept in the database (generated, rotated). `Debug` never shows the
/// private key.
pub mod signing_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jwt_signing_key")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub kid: String,
        pub algorithm: String,
        /// PKCS#8 PEM, or the HS256 secret; `None` once a key pair is retired.
        pub private_key: Option<String>,
        /// The public JWK as JSON; `None` for HS256.
        pub public_jwk: Option<String>,
        pub created_at: DateTimeUtc,
        /// `None` for the next key (published, not signing yet).
        pub activated_at: Option<DateTimeUtc>,
        pub retired_at: Option<DateTimeUtc>,
        pub not_after: Option<DateTimeUtc>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Model")
                .field("id", &self.id)
                .field("kid", &self.kid)
                .field("algorithm", &self.algorithm)
                .field("private_key", &self.private_key.as_ref().map(|_| "[redacted]"))
                .field("public_jwk", &self.public_jwk)
                .field("created_at", &self.created_at)
                .field("activated_at", &self.activated_at)
                .field("retired_at", &self.retired_at)
                .field("not_after", &self.not_after)
                .finish()
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
