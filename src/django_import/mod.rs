//! `portcullis import-django`: a Django project's users, groups, permissions, their joins,
//! DRF tokens and (optionally) live sessions, in one transaction.
//!
//! Every row is read and checked before any is written, so a bad row stops the import with
//! nothing changed (or, with `--skip-bad-rows`, is left out with what depends on it). Rows
//! are matched to what is already here by natural key (username, group name,
//! `app_label.codename`, token and session key digests), so a second run changes nothing.
//! Users keep their Django ids when those are free, so simplejwt's `user_id` claims and
//! client-side references stay right. A `--dry-run` does everything inside the transaction
//! and rolls it back: its report is exactly what a real run would do.
pub mod signing;
pub mod source;

use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, IntoActiveModel, Statement, TransactionTrait,
    TryInsertResult,
};
use serde_json::{Value, json};

use source::DjangoData;
pub use source::Source;

use crate::{
    crypto,
    events::{EventContext, EventKind},
    password::{self, Passwords},
    service::{accounts, tokens},
    state::AppState,
    store::{
        perm::{group, group_permissions, permission, user_groups, user_permissions},
        session, token, user,
    },
};

#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    pub dry_run: bool,
    pub skip_bad_rows: bool,
    /// Import live `django_session` rows, verified with these keys (SECRET_KEY first, then
    /// SECRET_KEY_FALLBACKS). Empty: sessions are not imported.
    pub secret_keys: Vec<String>,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// A row that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub row: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.row, self.reason)
    }
}

/// New, already-present and (users only) updated rows of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub new: u64,
    pub present: u64,
    pub updated: u64,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub users: Count,
    pub groups: Count,
    pub permissions: Count,
    /// Group memberships and permission grants (the three joins).
    pub joins: Count,
    pub tokens: Count,
    pub sessions: Count,
    /// Session rows not imported because Django itself no longer honours them.
    pub sessions_expired: u64,
    pub sessions_anonymous: u64,
    /// Sessions whose `_auth_user_hash` no longer matches (password changed since login).
    pub sessions_stale: u64,
    /// Rows left out (`--skip-bad-rows`), with the rows that depended on them.
    pub skipped: Vec<Problem>,
    /// Users imported with a password hash no hasher here reads: they cannot log in until
    /// given a new password (`portcullis changepassword`).
    pub unreadable_hashes: Vec<Problem>,
    /// Users already here whose row changed (id, username): their cached credentials go.
    pub updated_users: Vec<(i64, String)>,
    pub dry_run: bool,
}

impl Summary {
    /// `imported 12,408 users, 31 groups, 212 permissions, 9,930 tokens; 0 skipped`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} users, {} groups, {} permissions, {} tokens",
            if self.dry_run { "would import" } else { "imported" },
            thousands(self.users.new),
            thousands(self.groups.new),
            thousands(self.permissions.new),
            thousands(self.tokens.new),
        );
        if self.sessions != Count::default()
            || self.sessions_expired + self.sessions_anonymous + self.sessions_stale > 0
        {
            line.push_str(&format!(", {} sessions", thousands(self.sessions.new)));
        }
        line.push_str(&format!("; {} skipped", thousands(self.skipped.len() as u64)));
        let present = [
            (self.users.present, "users"),
            (self.groups.present, "groups"),
            (self.permissions.present, "permissions"),
            (self.tokens.present, "tokens"),
            (self.sessions.present, "sessions"),
        ];
        let present: Vec<String> =
            present.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{} {what}", thousands(*n))).collect();
        if !present.is_empty() {
            line.push_str(&format!(
                " ({} already here, {} users updated)",
                present.join(", "),
                thousands(self.users.updated)
            ));
        }
        line
    }
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Source(String),
    #[error("{} rows cannot be imported (nothing was written; --skip-bad-rows leaves them out):\n  {}",
        .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    BadRows(Vec<Problem>),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

pub async fn run(state: &AppState, options: &Options) -> Result<Summary, ImportError> {
    let progress = Progress::new(options.progress);
    progress.phase(format!("reading {}", options.source.describe()));
    let data = source::read(&options.source, !options.secret_keys.is_empty()).await?;
    let txn = state.db.begin().await?;
    let result = import(&txn, &state.passwords, data, options, &progress).await;
    let summary = match result {
        Ok(summary) if !options.dry_run => {
            txn.commit().await?;
            summary
        }
        other => {
            txn.rollback().await?;
            other?
        }
    };
    progress.finish();
    if !options.dry_run {
        let detail = json!({
            "source": options.source.describe(),
            "users": summary.users.new, "users_updated": summary.users.updated,
            "groups": summary.groups.new, "permissions": summary.permissions.new,
            "tokens": summary.tokens.new, "sessions": summary.sessions.new,
            "skipped": summary.skipped.len(),
        });
        let ctx = EventContext { via: Some("cli"), detail: Some(detail), ..Default::default() };
        state.events.emit(EventKind::DjangoImport, ctx).await;
        // A user deactivated or given a new password in Django: running servers drop what
        // they cached of them (and hear of it through NOTIFY on PostgreSQL).
        for (id, username) in &summary.updated_users {
            let ctx = EventContext {
                user_id: Some(*id),
                username: Some(username.clone()),
                via: Some("cli"),
                detail: Some(json!({"updated": true})),
                ..Default::default()
            };
            state.events.emit(EventKind::DjangoImport, ctx).await;
        }
    }
    Ok(summary)
}

async fn import(
    txn: &DatabaseTransaction,
    passwords: &Passwords,
    data: DjangoData,
    options: &Options,
    progress: &Progress,
) -> Result<Summary, ImportError> {
    let mut summary = Summary { dry_run: options.dry_run, ..Default::default() };
    let existing = user::Entity::find().all(txn).await?;
    let plan = Plan::make(&data, existing, passwords, &options.secret_keys, &mut summary);
    if !plan.problems.is_empty() && !options.skip_bad_rows {
        return Err(ImportError::BadRows(plan.problems));
    }
    summary.skipped = plan.problems.clone();
    progress.start(plan.rows());

    let group_ids = write_groups(txn, &plan, &mut summary, progress).await?;
    let permission_ids = write_permissions(txn, &plan, &mut summary, progress).await?;
    let users = write_users(txn, &plan, &mut summary, progress).await?;
    let user_ids = &users.ids;

    progress.phase("memberships and permission grants".into());
    let map = |ids: &HashMap<i64, i64>, id: i64| ids.get(&id).copied();
    let mut joins = Count::default();
    let pairs: Vec<_> =
        plan.user_groups.iter().filter_map(|&(u, g)| Some((map(user_ids, u)?, map(&group_ids, g)?))).collect();
    add(&mut joins, insert_pairs::<user_groups::Entity>(txn, &pairs, progress).await?);
    let pairs: Vec<_> = plan
        .user_permissions
        .iter()
        .filter_map(|&(u, p)| Some((map(user_ids, u)?, map(&permission_ids, p)?)))
        .collect();
    add(&mut joins, insert_pairs::<user_permissions::Entity>(txn, &pairs, progress).await?);
    let pairs: Vec<_> = plan
        .group_permissions
        .iter()
        .filter_map(|&(g, p)| Some((map(&group_ids, g)?, map(&permission_ids, p)?)))
        .collect();
    add(&mut joins, insert_pairs::<group_permissions::Entity>(txn, &pairs, progress).await?);
    summary.joins = joins;

    write_tokens(txn, &plan, &users, &mut summary, progress).await?;
    write_sessions(txn, &plan, &users, &mut summary, progress).await?;
    Ok(summary)
}

fn add(total: &mut Count, (new, present): (u64, u64)) {
    total.new += new;
    total.present += present;
}

// ---------------------------------------------------------------------------------------
// Checking every row before writing any.

/// A session to write: its key, Django's user id, expiry and the data left once the auth
/// keys are taken out.
struct PlannedSession {
    key: String,
    user_id: i64,
    expires_at: chrono::DateTime<Utc>,
    data: String,
}

/// What will be written, in Django's ids, with every bad row taken out.
struct Plan {
    /// Django users to insert, and existing users to update (with their id here).
    users: Vec<source::User>,
    /// Existing rows here, by username key.
    existing: HashMap<String, user::Model>,
    groups: Vec<source::Group>,
    permissions: Vec<source::Permission>,
    user_groups: Vec<(i64, i64)>,
    user_permissions: Vec<(i64, i64)>,
    group_permissions: Vec<(i64, i64)>,
    tokens: Vec<source::Token>,
    sessions: Vec<PlannedSession>,
    problems: Vec<Problem>,
}

impl Plan {
    fn rows(&self) -> u64 {
        (self.users.len()
            + self.groups.len()
            + self.permissions.len()
            + self.user_groups.len()
            + self.user_permissions.len()
            + self.group_permissions.len()
            + self.tokens.len()
            + self.sessions.len()) as u64
    }

    fn make(
        data: &DjangoData,
        existing: Vec<user::Model>,
        passwords: &Passwords,
        secret_keys: &[String],
        summary: &mut Summary,
    ) -> Self {
        let mut problems = Vec::new();
        let mut problem = |row: String, reason: String| problems.push(Problem { row, reason });
        let existing: HashMap<String, user::Model> =
            existing.into_iter().map(|u| (u.username_key.clone(), u)).collect();

        // Users: Django's field limits, and usernames unique ignoring case, in the source and
        // against the users already here.
        let mut users = Vec::new();
        let mut keys: HashMap<String, &source::User> = HashMap::new();
        for u in &data.users {
            let row = format!("user {} {:?}", u.id, u.username);
            let key = user::username_key(&u.username);
            let too_long = [
                ("username", &u.username, 150),
                ("email", &u.email, 254),
                ("first_name", &u.first_name, 150),
                ("last_name", &u.last_name, 150),
                ("password", &u.password, 255),
            ]
            .into_iter()
            .find(|(_, value, max)| value.chars().count() > *max);
            if u.username.is_empty() {
                problem(row, "empty username".into());
            } else if let Some((field, _, max)) = too_long {
                problem(row, format!("{field} longer than {max} characters"));
            } else if let Some(first) = keys.get(&key) {
                problem(
                    row,
                    format!(
                        "username differs only in case from user {} {:?}; usernames here are unique ignoring case \
                         (rename one in Django first)",
                        first.id, first.username
                    ),
                );
            } else if let Some(here) = existing.get(&key).filter(|here| here.username != u.username) {
                problem(row, format!("username differs only in case from {:?}, a user already here", here.username));
            } else {
                keys.insert(key, u);
                if !u.password.starts_with(password::UNUSABLE_PREFIX) && !passwords.knows_format(&u.password) {
                    let algorithm = u.password.split('$').next().unwrap_or_default();
                    summary.unreadable_hashes.push(Problem {
                        row: format!("user {:?}", u.username),
                        reason: format!(
                            "password hash format {algorithm:?} is not supported: imported, but cannot log in until \
                             given a new password (portcullis changepassword {})",
                            u.username
                        ),
                    });
                }
                users.push(u.clone());
            }
        }
        let user_ok: HashSet<i64> = users.iter().map(|u| u.id).collect();
        let user_known: HashSet<i64> = data.users.iter().map(|u| u.id).collect();

        let mut groups = Vec::new();
        let mut names = HashSet::new();
        for g in &data.groups {
            let row = format!("group {} {:?}", g.id, g.name);
            if g.name.is_empty() || g.name.chars().count() > 150 {
                problem(row, "name empty or longer than 150 characters".into());
            } else if !names.insert(g.name.as_str()) {
                problem(row, "the name appears twice".into());
            } else {
                groups.push(g.clone());
            }
        }
        let group_ok: HashSet<i64> = groups.iter().map(|g| g.id).collect();
        let group_known: HashSet<i64> = data.groups.iter().map(|g| g.id).collect();

        let mut permissions = Vec::new();
        for p in &data.permissions {
            let row = format!("permission {} {:?}", p.id, p.codename);
            match &p.app_label {
                None => problem(
                    row,
                    "its content type is not in the source (dump `contenttypes` too, or use --natural-foreign)".into(),
                ),
                Some(app) if app.chars().count() > 100 || p.codename.chars().count() > 100 => {
                    problem(row, "app_label or codename longer than 100 characters".into())
                }
                Some(_) if p.name.chars().count() > 255 => problem(row, "name longer than 255 characters".into()),
                Some(_) => permissions.push(p.clone()),
            }
        }
        let permission_ok: HashSet<i64> = permissions.iter().map(|p| p.id).collect();
        let permission_known: HashSet<i64> = data.permissions.iter().map(|p| p.id).collect();

        // A join to a row left out goes with it; a join to a row the source does not have
        // is a bad row of its own.
        let mut joins = |name: &str,
                         pairs: &[(i64, i64)],
                         (left_ok, left_known, left): (&HashSet<i64>, &HashSet<i64>, &str),
                         (right_ok, right_known, right): (&HashSet<i64>, &HashSet<i64>, &str)| {
            let mut kept = Vec::new();
            for &(l, r) in pairs {
                if !left_known.contains(&l) || !right_known.contains(&r) {
                    let missing = if left_known.contains(&l) { format!("{right} {r}") } else { format!("{left} {l}") };
                    problem(format!("{name} ({l}, {r})"), format!("{missing} is not in the source"));
                } else if left_ok.contains(&l) && right_ok.contains(&r) {
                    kept.push((l, r));
                }
            }
            kept
        };
        let user_groups = joins(
            "auth_user_groups",
            &data.user_groups,
            (&user_ok, &user_known, "user"),
            (&group_ok, &group_known, "group"),
        );
        let user_permissions = joins(
            "auth_user_user_permissions",
            &data.user_permissions,
            (&user_ok, &user_known, "user"),
            (&permission_ok, &permission_known, "permission"),
        );
        let group_permissions = joins(
            "auth_group_permissions",
            &data.group_permissions,
            (&group_ok, &group_known, "group"),
            (&permission_ok, &permission_known, "permission"),
        );

        let mut tokens = Vec::new();
        for t in &data.tokens {
            let shown: String = t.key.chars().take(6).collect();
            let row = format!("token {shown}… of user {}", t.user_id);
            if !tokens::plausible_key(&t.key) {
                problem(row, "not a DRF key (40 lowercase hex characters)".into());
            } else if !user_known.contains(&t.user_id) {
                problem(row, "its user is not in the source".into());
            } else if user_ok.contains(&t.user_id) {
                tokens.push(t.clone());
            }
        }

        let mut sessions = Vec::new();
        let now = Utc::now();
        let by_id: HashMap<i64, &source::User> = users.iter().map(|u| (u.id, u)).collect();
        for s in &data.sessions {
            if s.expire_date <= now {
                summary.sessions_expired += 1;
                continue;
            }
            let shown: String = s.key.chars().take(6).collect();
            let row = format!("session {shown}…");
            if !crate::service::sessions::plausible_key(&s.key) {
                problem(row, "not a Django session key".into());
                continue;
            }
            let mut map = match signing::load_session(&s.data, secret_keys) {
                Ok(map) => map,
                Err(e) => {
                    problem(row, e.to_string());
                    continue;
                }
            };
            let Some(user_id) = map.remove("_auth_user_id") else {
                summary.sessions_anonymous += 1;
                continue;
            };
            let user_id = match &user_id {
                Value::String(s) => s.parse::<i64>().ok(),
                Value::Number(n) => n.as_i64(),
                _ => None,
            };
            let Some(user_id) = user_id.filter(|id| user_known.contains(id)) else {
                problem(row, "its _auth_user_id is not a user in the source".into());
                continue;
            };
            let Some(account) = by_id.get(&user_id) else { continue }; // its user is left out
            let hash = map.remove("_auth_user_hash");
            map.remove("_auth_user_backend");
            if !hash
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|h| signing::auth_hash_matches(h, &account.password, secret_keys))
            {
                summary.sessions_stale += 1;
                continue;
            }
            sessions.push(PlannedSession {
                key: s.key.clone(),
                user_id,
                expires_at: s.expire_date,
                data: Value::Object(map).to_string(),
            });
        }
        Plan {
            users,
            existing,
            groups,
            permissions,
            user_groups,
            user_permissions,
            group_permissions,
            tokens,
            sessions,
            problems,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Writing.

/// Rows per INSERT: under SQLite's and PostgreSQL's bound-parameter limits for every table.
const BATCH: usize = 1000;

/// Inserts `rows` in batches and returns how many were written. With `unique` columns, a
/// row already there (by those columns) is left as it is and not counted; without, a
/// conflict is an error.
async fn insert_batches<E: EntityTrait>(
    txn: &DatabaseTransaction,
    rows: impl IntoIterator<Item = E::ActiveModel>,
    unique: &[E::Column],
    progress: &Progress,
) -> Result<u64, DbErr> {
    let mut rows = rows.into_iter().peekable();
    let mut new = 0;
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(BATCH).collect();
        let n = chunk.len();
        let insert = E::insert_many(chunk);
        new += if unique.is_empty() {
            insert.exec_without_returning(txn).await?
        } else {
            match insert.on_conflict_do_nothing_on(unique.iter().copied()).exec_without_returning(txn).await? {
                TryInsertResult::Inserted(n) => n,
                TryInsertResult::Empty | TryInsertResult::Conflicted => 0,
            }
        };
        progress.add(n);
    }
    Ok(new)
}

/// Django group id → id here.
async fn write_groups(
    txn: &DatabaseTransaction,
    plan: &Plan,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<HashMap<i64, i64>, DbErr> {
    progress.phase("groups".into());
    let rows = plan.groups.iter().map(|g| group::ActiveModel { id: NotSet, name: Set(g.name.clone()) });
    let new = insert_batches::<group::Entity>(txn, rows, &[group::Column::Name], progress).await?;
    summary.groups = Count { new, present: plan.groups.len() as u64 - new, updated: 0 };
    let here: HashMap<String, i64> =
        group::Entity::find().all(txn).await?.into_iter().map(|g| (g.name, g.id)).collect();
    Ok(plan.groups.iter().filter_map(|g| Some((g.id, *here.get(&g.name)?))).collect())
}

/// Django permission id → id here.
async fn write_permissions(
    txn: &DatabaseTransaction,
    plan: &Plan,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<HashMap<i64, i64>, DbErr> {
    progress.phase("permissions".into());
    let rows = plan.permissions.iter().map(|p| permission::ActiveModel {
        id: NotSet,
        name: Set(p.name.clone()),
        app_label: Set(p.app_label.clone().unwrap_or_default()),
        codename: Set(p.codename.clone()),
    });
    let unique = [permission::Column::AppLabel, permission::Column::Codename];
    let new = insert_batches::<permission::Entity>(txn, rows, &unique, progress).await?;
    summary.permissions = Count { new, present: plan.permissions.len() as u64 - new, updated: 0 };
    let here: HashMap<(String, String), i64> =
        permission::Entity::find().all(txn).await?.into_iter().map(|p| ((p.app_label, p.codename), p.id)).collect();
    Ok(plan
        .permissions
        .iter()
        .filter_map(|p| Some((p.id, *here.get(&(p.app_label.clone()?, p.codename.clone()))?)))
        .collect())
}

/// Inserts new users (with their Django id when it is free here) and brings users already
/// here up to date.
async fn write_users(
    txn: &DatabaseTransaction,
    plan: &Plan,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<Written, DbErr> {
    progress.phase("users".into());
    let taken: HashSet<i64> = plan.existing.values().map(|u| u.id).collect();
    let mut with_id = Vec::new();
    let mut without_id = Vec::new();
    for u in &plan.users {
        let key = user::username_key(&u.username);
        match plan.existing.get(&key) {
            Some(here) => {
                if let Some(update) = updated(here, u) {
                    user::Entity::update(update).exec(txn).await?;
                    summary.users.updated += 1;
                    summary.updated_users.push((here.id, here.username.clone()));
                }
                summary.users.present += 1;
                progress.add(1);
            }
            None => {
                let keep_id = !taken.contains(&u.id) && u.id > 0;
                let row = user::ActiveModel {
                    id: if keep_id { Set(u.id) } else { NotSet },
                    username: Set(u.username.clone()),
                    username_key: Set(key),
                    password: Set(u.password.clone()),
                    email: Set(u.email.clone()),
                    first_name: Set(u.first_name.clone()),
                    last_name: Set(u.last_name.clone()),
                    is_active: Set(u.is_active),
                    is_staff: Set(u.is_staff),
                    is_superuser: Set(u.is_superuser),
                    last_login: Set(u.last_login),
                    date_joined: Set(u.date_joined),
                    // Only a user under its Django id may accept simplejwt's stamp-less tokens,
                    // whose user_id claim is that id.
                    security_stamp: Set(accounts::imported_security_stamp(keep_id)),
                };
                if keep_id { with_id.push(row) } else { without_id.push(row) }
            }
        }
    }
    for rows in [with_id, without_id] {
        // No conflict clause: a username taken since the check must fail the import, not
        // be matched to someone else.
        summary.users.new += insert_batches::<user::Entity>(txn, rows, &[], progress).await?;
    }
    if txn.get_database_backend() == DbBackend::Postgres && summary.users.new > 0 {
        // Explicit ids do not move the sequence: the next registration must not collide.
        txn.execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT setval(pg_get_serial_sequence('auth_user', 'id'), (SELECT MAX(id) FROM auth_user))",
        ))
        .await?;
    }
    let here = user::Entity::find().all(txn).await?;
    let stamps = here.iter().map(|u| (u.id, u.security_stamp.clone())).collect();
    let by_key: HashMap<String, i64> = here.into_iter().map(|u| (u.username_key, u.id)).collect();
    let ids = plan.users.iter().filter_map(|u| Some((u.id, *by_key.get(&user::username_key(&u.username))?))).collect();
    Ok(Written { ids, stamps })
}

/// The users as written: Django id → id here, and id here → security stamp.
struct Written {
    ids: HashMap<i64, i64>,
    stamps: HashMap<i64, String>,
}

/// The update bringing a user here in line with Django, if anything differs. A password
/// already upgraded to argon2id here (by a login since the last import) is kept: it is
/// the same password, or a newer one set here.
fn updated(here: &user::Model, django: &source::User) -> Option<user::ActiveModel> {
    let upgraded_here = here.password.starts_with("$argon2id$");
    let password = if upgraded_here { here.password.clone() } else { django.password.clone() };
    let want = user::Model {
        password,
        email: django.email.clone(),
        first_name: django.first_name.clone(),
        last_name: django.last_name.clone(),
        is_active: django.is_active,
        is_staff: django.is_staff,
        is_superuser: django.is_superuser,
        last_login: django.last_login.max(here.last_login),
        // dumpdata keeps milliseconds only: the same instant, not a change.
        date_joined: if same_millisecond(django.date_joined, here.date_joined) {
            here.date_joined
        } else {
            django.date_joined
        },
        // A new password in Django ends the sessions and tokens issued under the old one.
        security_stamp: if !upgraded_here && here.password != django.password {
            accounts::imported_security_stamp(here.id == django.id)
        } else {
            here.security_stamp.clone()
        },
        ..here.clone()
    };
    if &want == here {
        return None;
    }
    let mut active = want.into_active_model();
    for column in [
        user::Column::Password,
        user::Column::Email,
        user::Column::FirstName,
        user::Column::LastName,
        user::Column::IsActive,
        user::Column::IsStaff,
        user::Column::IsSuperuser,
        user::Column::LastLogin,
        user::Column::DateJoined,
        user::Column::SecurityStamp,
    ] {
        active.reset(column);
    }
    Some(active)
}

fn same_millisecond(a: chrono::DateTime<Utc>, b: chrono::DateTime<Utc>) -> bool {
    a.timestamp_millis() == b.timestamp_millis()
}

/// A join table's rows, (left id, right id) here; returns (new, already there).
async fn insert_pairs<E>(
    txn: &DatabaseTransaction,
    pairs: &[(i64, i64)],
    progress: &Progress,
) -> Result<(u64, u64), DbErr>
where
    E: EntityTrait,
    E::ActiveModel: Send,
{
    let columns: Vec<E::Column> = <E::Column as sea_orm::Iterable>::iter().collect();
    let [_, left, right] = columns[..] else {
        return Err(DbErr::Custom(format!("{} is not a join table", E::default().table_name())));
    };
    let rows = pairs.iter().map(|&(l, r)| {
        let mut row = E::ActiveModel::default();
        row.set(left, l.into());
        row.set(right, r.into());
        row
    });
    let new = insert_batches::<E>(txn, rows, &[left, right], progress).await?;
    Ok((new, pairs.len() as u64 - new))
}

async fn write_tokens(
    txn: &DatabaseTransaction,
    plan: &Plan,
    users: &Written,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<(), DbErr> {
    progress.phase("tokens".into());
    let rows = plan.tokens.iter().filter_map(|t| {
        Some(token::ActiveModel {
            id: NotSet,
            key_digest: Set(crypto::digest(&t.key).to_vec()),
            user_id: Set(*users.ids.get(&t.user_id)?),
            name: Set("Django".into()),
            created_at: Set(t.created),
            last_used: Set(None),
            expires_at: Set(None),
        })
    });
    let new = insert_batches::<token::Entity>(txn, rows, &[token::Column::KeyDigest], progress).await?;
    summary.tokens = Count { new, present: plan.tokens.len() as u64 - new, updated: 0 };
    Ok(())
}

async fn write_sessions(
    txn: &DatabaseTransaction,
    plan: &Plan,
    users: &Written,
    summary: &mut Summary,
    progress: &Progress,
) -> Result<(), DbErr> {
    if plan.sessions.is_empty() {
        return Ok(());
    }
    progress.phase("sessions".into());
    let now = Utc::now();
    let rows = plan.sessions.iter().filter_map(|s| {
        let user_id = *users.ids.get(&s.user_id)?;
        Some(session::ActiveModel {
            id: NotSet,
            key_digest: Set(crypto::digest(&s.key).to_vec()),
            public_id: Set(crypto::random_hex(16)),
            user_id: Set(user_id),
            auth_stamp: Set(users.stamps.get(&user_id)?.clone()),
            data: Set(s.data.clone()),
            version: Set(0),
            created_at: Set(now),
            last_seen: Set(now),
            expires_at: Set(s.expires_at),
            ip: Set(None),
            user_agent: Set(None),
        })
    });
    let new = insert_batches::<session::Entity>(txn, rows, &[session::Column::KeyDigest], progress).await?;
    summary.sessions = Count { new, present: plan.sessions.len() as u64 - new, updated: 0 };
    Ok(())
}

// ---------------------------------------------------------------------------------------

/// The progress bar on stderr; draws nothing when stderr is not a terminal or when off.
struct Progress(ProgressBar);

impl Progress {
    fn new(on: bool) -> Self {
        let bar = if on { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
        Self(bar)
    }

    fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} rows  {msg}") {
            self.0.set_style(style);
        }
    }

    fn phase(&self, message: String) {
        self.0.set_message(message);
    }

    fn add(&self, rows: usize) {
        self.0.inc(rows as u64);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn django_user(id: i64, password: &str) -> source::User {
        source::User {
            id,
            username: "alice".into(),
            password: password.into(),
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            is_active: true,
            is_staff: false,
            is_superuser: false,
            last_login: None,
            date_joined: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn here(id: i64, password: &str) -> user::Model {
        let u = django_user(id, password);
        user::Model {
            id,
            username: u.username,
            username_key: "alice".into(),
            password: u.password,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            is_active: true,
            is_staff: false,
            is_superuser: false,
            last_login: None,
            date_joined: u.date_joined,
            security_stamp: "old".into(),
        }
    }

    #[test]
    fn a_new_password_in_django_gives_a_simplejwt_stamp_only_under_the_django_id() {
        let stamp = |a: user::ActiveModel| a.security_stamp.unwrap();
        assert!(updated(&here(1, "pbkdf2_sha256$a"), &django_user(1, "pbkdf2_sha256$a")).is_none(), "no change");
        let same_id = updated(&here(1, "pbkdf2_sha256$a"), &django_user(1, "pbkdf2_sha256$b")).unwrap();
        assert!(stamp(same_id).starts_with(accounts::IMPORTED_STAMP_PREFIX));
        // Matched by username under another id: Django's user 1 is not this user here.
        let other_id = updated(&here(2, "pbkdf2_sha256$a"), &django_user(1, "pbkdf2_sha256$b")).unwrap();
        let other = stamp(other_id);
        assert!(!other.starts_with(accounts::IMPORTED_STAMP_PREFIX) && other != "old", "{other}");
        // A hash upgraded here is kept, and so is the stamp.
        let upgraded = here(1, "$argon2id$v=19$x");
        assert!(updated(&upgraded, &django_user(1, "pbkdf2_sha256$b")).is_none());
    }

    #[test]
    fn thousands_separators() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (12408, "12,408"), (1_234_567, "1,234,567")] {
            assert_eq!(thousands(n), s);
        }
    }

    #[test]
    fn the_summary_line() {
        let mut s = Summary::default();
        s.users.new = 12408;
        s.groups.new = 31;
        s.permissions.new = 212;
        s.tokens.new = 9930;
        assert_eq!(s.line(), "imported 12,408 users, 31 groups, 212 permissions, 9,930 tokens; 0 skipped");
        s.users = Count { new: 0, present: 12408, updated: 2 };
        s.dry_run = true;
        assert_eq!(
            s.line(),
            "would import 0 users, 31 groups, 212 permissions, 9,930 tokens; 0 skipped \
             (12,408 users already here, 2 users updated)"
        );
    }
}
