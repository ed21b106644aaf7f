//! The whole portcullis schema: the auth model, sessions, tokens, JWT records, server
//! secrets, the audit trail and throttle counters (000001-000004), then the email
//! verification flag (000005), the JWT signing keys that rotate (000006), and the second
//! factor's tables and assurance levels (000007).
pub use sea_orm_migration::prelude::*;

mod m20261122_000001_users;
mod m20261122_000002_sessions;
mod m20261122_000003_tokens;
mod m20261122_000004_operations;
mod m20261201_000005_email_verified;
mod m20261201_000006_signing_keys;
mod m20261202_000007_mfa;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_users::Migration),
            Box::new(m20261122_000002_sessions::Migration),
            Box::new(m20261122_000003_tokens::Migration),
            Box::new(m20261122_000004_operations::Migration),
            Box::new(m20261201_000005_email_verified::Migration),
            Box::new(m20261201_000006_signing_keys::Migration),
            Box::new(m20261202_000007_mfa::Migration),
        ]
    }
}

/// A foreign key that disappears with its parent row (Django's `on_delete=CASCADE`).
pub(crate) fn cascade(
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(from.0, from.1).to(to.0, to.1).on_delete(ForeignKeyAction::Cascade).to_owned()
}
