//! Queries whose SQL text is built once per backend and kept: the credential lookups of a
//! cache miss. sea-orm builds a statement from scratch on every call (the select list with
//! its `A_`/`B_` aliases formatted column by column, then the SQL string), which was a quarter
//! of the instructions of a miss (callgrind; README, "Performance"). Here the builder still
//! writes the SQL, once; each call binds its values to the kept text.
use std::sync::OnceLock;

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryTrait, Select, SelectTwo, Statement,
};

use super::user;

/// The text of one query for SQLite and for PostgreSQL (their placeholders differ).
pub struct KeptSql {
    sqlite: OnceLock<String>,
    postgres: OnceLock<String>,
}

impl KeptSql {
    pub const fn new() -> Self {
        Self { sqlite: OnceLock::new(), postgres: OnceLock::new() }
    }

    fn text(&self, backend: DbBackend, build: impl FnOnce() -> Statement) -> String {
        let slot = if backend == DbBackend::Postgres { &self.postgres } else { &self.sqlite };
        slot.get_or_init(|| build().sql).clone()
    }
}

impl Default for KeptSql {
    fn default() -> Self {
        Self::new()
    }
}

/// The row of `E` whose unique `key_digest` is `digest`, with its user: what
/// `filter(KeyDigest.eq(digest)).find_also_related(user::Entity).one(db)` returns, read
/// with the kept text. `filtered` makes that select for a digest; its only value must be
/// the digest (the unique key makes a `LIMIT` needless, so none is bound).
pub async fn by_digest_with_user<E>(
    db: &impl ConnectionTrait,
    sql: &KeptSql,
    filtered: impl FnOnce(Vec<u8>) -> Select<E>,
    digest: &[u8; 32],
) -> Result<Option<(E::Model, user::Model)>, DbErr>
where
    E: EntityTrait + sea_orm::Related<user::Entity>,
    E::Model: FromQueryResult,
{
    let backend = db.get_database_backend();
    let text = sql.text(backend, || {
        let select: SelectTwo<E, user::Entity> = filtered(digest.to_vec()).find_also_related(user::Entity);
        select.build(backend)
    });
    let statement = Statement::from_sql_and_values(backend, text, [digest.to_vec().into()]);
    let Some(row) = db.query_one_raw(statement).await? else { return Ok(None) };
    // The prefixes sea-orm's SelectTwo gives the two models' columns.
    let found = E::Model::from_query_result(&row, "A_")?;
    Ok(user::Model::from_query_result_optional(&row, "B_")?.map(|user| (found, user)))
}
