//! What running the server needs besides the auth model: persisted server secrets (the
//! generated JWT key, shared by every instance), the audit trail, and shared throttle counters.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ServerSecret {
    Table,
    Name,
    Value,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditEvent {
    Table,
    Id,
    At,
    Event,
    /// No foreign key: the trail outlives the users it mentions.
    UserId,
    Username,
    Ip,
    UserAgent,
    /// Public id of the credential involved (session public id, token id, JWT jti); never a secret.
    Credential,
    Detail,
}

#[derive(DeriveIden)]
enum ThrottleHit {
    Table,
    Id,
    ScopeKey,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ServerSecret::Table)
                    .col(string_len(ServerSecret::Name, 64).primary_key())
                    .col(text(ServerSecret::Value))
                    .col(timestamp_with_time_zone(ServerSecret::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvent::Table)
                    .col(big_pk_auto(AuditEvent::Id))
                    .col(timestamp_with_time_zone(AuditEvent::At))
                    .col(string_len(AuditEvent::Event, 64))
                    .col(big_integer_null(AuditEvent::UserId))
                    .col(string_len_null(AuditEvent::Username, 150))
                    .col(string_len_null(AuditEvent::Ip, 45))
                    .col(string_len_null(AuditEvent::UserAgent, 512))
                    .col(string_len_null(AuditEvent::Credential, 64))
                    .col(text(AuditEvent::Detail).default("{}"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ThrottleHit::Table)
                    .col(big_pk_auto(ThrottleHit::Id))
                    .col(string_len(ThrottleHit::ScopeKey, 255))
                    .col(timestamp_with_time_zone(ThrottleHit::At))
                    .to_owned(),
            )
            .await?;
        let indexes = [
            ("audit_event_at_idx", AuditEvent::Table.into_iden(), vec![AuditEvent::At.into_iden()]),
            (
                "audit_event_user_idx",
                AuditEvent::Table.into_iden(),
                vec![AuditEvent::UserId.into_iden(), AuditEvent::At.into_iden()],
            ),
            (
                "audit_event_event_idx",
                AuditEvent::Table.into_iden(),
                vec![AuditEvent::Event.into_iden(), AuditEvent::At.into_iden()],
            ),
            (
                "throttle_hit_scope_idx",
                ThrottleHit::Table.into_iden(),
                vec![ThrottleHit::ScopeKey.into_iden(), ThrottleHit::At.into_iden()],
            ),
        ];
        for (name, table, cols) in indexes {
            let mut idx = Index::create();
            idx.name(name).table(table);
            for col in cols {
                idx.col(col);
            }
            manager.create_index(idx.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["throttle_hit", "audit_event", "server_secret"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
