//! Deciding what an import writes, before it writes anything: every row checked (Django's
//! field limits, references to rows the source has), bad rows taken out with what depends
//! on them, and Django's users matched by username to the users already here.
mod users;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    report::{Problem, Summary},
    signing,
    source::{self, DjangoData},
};
use crate::{
    password::Passwords,
    service::{sessions, tokens},
    store::user,
};
use users::{check_users, match_users};

/// What will be written, in Django's ids, with every bad row taken out.
pub(super) struct Plan {
    /// Django users, each inserted or matched to a user here.
    pub(super) users: Vec<(source::User, UserRow)>,
    pub(super) groups: Vec<source::Group>,
    pub(super) permissions: Vec<source::Permission>,
    pub(super) user_groups: Vec<(i64, i64)>,
    pub(super) user_permissions: Vec<(i64, i64)>,
    pub(super) group_permissions: Vec<(i64, i64)>,
    pub(super) tokens: Vec<source::Token>,
    pub(super) sessions: Vec<PlannedSession>,
    pub(super) problems: Vec<Problem>,
}

/// What becomes of a Django user.
pub(super) enum UserRow {
    /// No user here has its username: inserted, under its Django id when that id is free here.
    New { keep_id: bool },
    /// A user here has its username: that row as Django has it now, if anything differs.
    Here(Option<Box<user::Model>>),
}

/// A session to write: its key, Django's user id, expiry and the data left once the auth
/// keys are taken out.
pub(super) struct PlannedSession {
    pub(super) key: String,
    pub(super) user_id: i64,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) data: String,
}

impl Plan {
    /// Checks every row of `data` against the rest and against the users here (`existing`);
    /// unreadable password hashes and sessions Django no longer honours are counted in
    /// `summary`.
    pub(super) fn make(
        data: &DjangoData,
        existing: Vec<user::Model>,
        passwords: &Passwords,
        secret_keys: &[String],
        summary: &mut Summary,
    ) -> Self {
        let mut problems = Problems::default();
        let existing: HashMap<String, user::Model> =
            existing.into_iter().map(|u| (u.username_key.clone(), u)).collect();
        let users = check_users(&data.users, &existing, passwords, &mut problems, summary);
        let groups = check_groups(&data.groups, &mut problems);
        let permissions = check_permissions(&data.permissions, &mut problems);
        let user_ids = Ids::new(&data.users, &users, |u| u.id);
        let group_ids = Ids::new(&data.groups, &groups, |g| g.id);
        let permission_ids = Ids::new(&data.permissions, &permissions, |p| p.id);
        let (u, g, p) = ((&user_ids, "user"), (&group_ids, "group"), (&permission_ids, "permission"));
        Plan {
            user_groups: problems.joins("auth_user_groups", &data.user_groups, u, g),
            user_permissions: problems.joins("auth_user_user_permissions", &data.user_permissions, u, p),
            group_permissions: problems.joins("auth_group_permissions", &data.group_permissions, g, p),
            tokens: check_tokens(&data.tokens, &user_ids, &mut problems),
            sessions: check_sessions(&data.sessions, &users, &user_ids, secret_keys, &mut problems, summary),
            users: match_users(users, &existing),
            groups,
            permissions,
            problems: problems.0,
        }
    }

    /// How many rows the writing goes through (for the progress bar).
    pub(super) fn rows(&self) -> u64 {
        (self.users.len()
            + self.groups.len()
            + self.permissions.len()
            + self.user_groups.len()
            + self.user_permissions.len()
            + self.group_permissions.len()
            + self.tokens.len()
            + self.sessions.len()) as u64
    }
}

/// The bad rows, in the order they are found.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, row: String, reason: impl Into<String>) {
        self.0.push(Problem { row, reason: reason.into() });
    }

    /// The join rows to keep. A join to a row left out goes with it; a join to a row the
    /// source does not have is a bad row of its own.
    fn joins(
        &mut self,
        table: &str,
        pairs: &[(i64, i64)],
        (left, left_name): (&Ids, &str),
        (right, right_name): (&Ids, &str),
    ) -> Vec<(i64, i64)> {
        let mut kept = Vec::new();
        for &(l, r) in pairs {
            if !left.known.contains(&l) || !right.known.contains(&r) {
                let missing =
                    if left.known.contains(&l) { format!("{right_name} {r}") } else { format!("{left_name} {l}") };
                self.add(format!("{table} ({l}, {r})"), format!("{missing} is not in the source"));
            } else if left.ok.contains(&l) && right.ok.contains(&r) {
                kept.push((l, r));
            }
        }
        kept
    }
}

/// One table's Django ids: all the source has, and those of the rows kept.
struct Ids {
    known: HashSet<i64>,
    ok: HashSet<i64>,
}

impl Ids {
    fn new<T>(all: &[T], kept: &[T], id: impl Fn(&T) -> i64) -> Self {
        Self { known: all.iter().map(&id).collect(), ok: kept.iter().map(&id).collect() }
    }
}

fn check_groups(all: &[source::Group], problems: &mut Problems) -> Vec<source::Group> {
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    for g in all {
        let row = format!("group {} {:?}", g.id, g.name);
        if g.name.is_empty() || g.name.chars().count() > 150 {
            problems.add(row, "name empty or longer than 150 characters");
        } else if !names.insert(g.name.as_str()) {
            problems.add(row, "the name appears twice");
        } else {
            groups.push(g.clone());
        }
    }
    groups
}

fn check_permissions(all: &[source::Permission], problems: &mut Problems) -> Vec<source::Permission> {
    let mut permissions = Vec::new();
    for p in all {
        let row = format!("permission {} {:?}", p.id, p.codename);
        match &p.app_label {
            None => problems
                .add(row, "its content type is not in the source (dump `contenttypes` too, or use --natural-foreign)"),
            Some(app) if app.chars().count() > 100 || p.codename.chars().count() > 100 => {
                problems.add(row, "app_label or codename longer than 100 characters")
            }
            Some(_) if p.name.chars().count() > 255 => problems.add(row, "name longer than 255 characters"),
            Some(_) => permissions.push(p.clone()),
        }
    }
    permissions
}

fn check_tokens(all: &[source::Token], users: &Ids, problems: &mut Problems) -> Vec<source::Token> {
    let mut kept = Vec::new();
    for t in all {
        let row = format!("token {}… of user {}", shown(&t.key), t.user_id);
        if !tokens::plausible_key(&t.key) {
            problems.add(row, "not a DRF key (40 lowercase hex characters)");
        } else if !users.known.contains(&t.user_id) {
            problems.add(row, "its user is not in the source");
        } else if users.ok.contains(&t.user_id) {
            kept.push(t.clone());
        }
    }
    kept
}

/// The start of a key, to name its row without giving it away.
fn shown(key: &str) -> String {
    key.chars().take(6).collect()
}

/// What becomes of one `django_session` row.
enum SessionCheck {
    Keep(PlannedSession),
    Expired,
    /// No user logged in.
    Anonymous,
    /// The user's password changed since (`_auth_user_hash` no longer matches).
    Stale,
    /// Its user is left out.
    UserLeftOut,
    Bad(String),
}

fn check_sessions(
    all: &[source::Session],
    users: &[source::User],
    user_ids: &Ids,
    secret_keys: &[String],
    problems: &mut Problems,
    summary: &mut Summary,
) -> Vec<PlannedSession> {
    let mut kept = Vec::new();
    let now = Utc::now();
    let by_id: HashMap<i64, &source::User> = users.iter().map(|u| (u.id, u)).collect();
    for s in all {
        match check_session(s, now, &by_id, user_ids, secret_keys) {
            SessionCheck::Keep(planned) => kept.push(planned),
            SessionCheck::Expired => summary.sessions_expired += 1,
            SessionCheck::Anonymous => summary.sessions_anonymous += 1,
            SessionCheck::Stale => summary.sessions_stale += 1,
            SessionCheck::UserLeftOut => {}
            SessionCheck::Bad(reason) => problems.add(format!("session {}…", shown(&s.key)), reason),
        }
    }
    kept
}

/// A session is imported only when Django itself would still honour it: unexpired, signed
/// with one of `secret_keys`, and with its user's current password hash.
fn check_session(
    s: &source::Session,
    now: DateTime<Utc>,
    by_id: &HashMap<i64, &source::User>,
    user_ids: &Ids,
    secret_keys: &[String],
) -> SessionCheck {
    if s.expire_date <= now {
        return SessionCheck::Expired;
    }
    if !sessions::plausible_key(&s.key) {
        return SessionCheck::Bad("not a Django session key".into());
    }
    let mut map = match signing::load_session(&s.data, secret_keys) {
        Ok(map) => map,
        Err(e) => return SessionCheck::Bad(e.to_string()),
    };
    let Some(user_id) = map.remove("_auth_user_id") else { return SessionCheck::Anonymous };
    let user_id = match &user_id {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    let Some(user_id) = user_id.filter(|id| user_ids.known.contains(id)) else {
        return SessionCheck::Bad("its _auth_user_id is not a user in the source".into());
    };
    let Some(account) = by_id.get(&user_id) else { return SessionCheck::UserLeftOut };
    let hash = map.remove("_auth_user_hash");
    map.remove("_auth_user_backend");
    if !hash
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|h| signing::auth_hash_matches(h, &account.password, secret_keys))
    {
        return SessionCheck::Stale;
    }
    let data = Value::Object(map).to_string();
    SessionCheck::Keep(PlannedSession { key: s.key.clone(), user_id, expires_at: s.expire_date, data })
}
