//! Reading a Django project's auth data: from its database (SQLite or PostgreSQL) or from
//! `manage.py dumpdata` JSON. Everything is read into memory first (100,000 users are a
//! few tens of megabytes), so the import can check every row before it writes any.
use std::{collections::HashMap, path::Path};

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, QueryResult, Statement};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub date_joined: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    pub id: i64,
    pub name: String,
    /// The content type's `app_label`; `None` when the content type is not in the source.
    pub app_label: Option<String>,
    pub codename: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub key: String,
    pub user_id: i64,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub key: String,
    pub data: String,
    pub expire_date: DateTime<Utc>,
}

/// What an import reads. Joins are (left id, right id) pairs in Django's ids.
#[derive(Debug, Default)]
pub struct DjangoData {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub permissions: Vec<Permission>,
    pub user_groups: Vec<(i64, i64)>,
    pub user_permissions: Vec<(i64, i64)>,
    pub group_permissions: Vec<(i64, i64)>,
    pub tokens: Vec<Token>,
    /// `false`: the source has no `authtoken_token` (DRF's authtoken app is not installed).
    pub has_tokens: bool,
    pub sessions: Vec<Session>,
}

/// Where the data comes from, as given to `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A database URL (`sqlite://…`, `postgres://…`).
    Database(String),
    /// A `dumpdata` JSON file.
    Dump(std::path::PathBuf),
}

impl Source {
    pub fn parse(from: &str) -> Result<Self, String> {
        if from.starts_with("sqlite:") {
            // Read-only unless the URL says otherwise: the import never writes to Django's database.
            let url = if from.contains('?') { from.to_owned() } else { format!("{from}?mode=ro") };
            return Ok(Self::Database(url));
        }
        if from.starts_with("postgres://") || from.starts_with("postgresql://") {
            return Ok(Self::Database(from.to_owned()));
        }
        let path = Path::new(from);
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")) {
            return Ok(Self::Dump(path.to_owned()));
        }
        if path.is_file() {
            // A bare path to Django's db.sqlite3. Read-only: the import never writes there.
            return Ok(Self::Database(format!("sqlite://{}?mode=ro", path.display())));
        }
        Err(format!("--from {from:?}: expected sqlite:///path/to/db.sqlite3, postgres://…, or a dumpdata .json file"))
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Database(url) => redact(url),
            Self::Dump(path) => path.display().to_string(),
        }
    }
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

pub async fn read(source: &Source, sessions: bool) -> Result<DjangoData, String> {
    match source {
        Source::Database(url) => read_database(url, sessions).await,
        Source::Dump(path) => {
            if sessions {
                return Err("--sessions needs the Django database: dumpdata files do not hold django_session".into());
            }
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            read_dump(&text).map_err(|e| format!("{}: {e}", path.display()))
        }
    }
}

// ---------------------------------------------------------------------------------------
// A Django database.

const REQUIRED_TABLES: [&str; 7] = [
    "auth_user",
    "auth_group",
    "auth_permission",
    "django_content_type",
    "auth_user_groups",
    "auth_user_user_permissions",
    "auth_group_permissions",
];

async fn read_database(url: &str, sessions: bool) -> Result<DjangoData, String> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false).max_connections(1);
    let shown = redact(url);
    let db = Database::connect(opts).await.map_err(|e| match e.to_string() {
        e if e.contains("file is not a database") => "not a Django database: the file is not an SQLite database".into(),
        e => format!("cannot open the Django database {shown}: {e}"),
    })?;
    let result = read_tables(&db, sessions).await.map_err(|e| format!("{shown}: {e}"));
    let _ = db.close().await;
    result
}

async fn read_tables(db: &DatabaseConnection, sessions: bool) -> Result<DjangoData, String> {
    let tables = table_names(db).await?;
    let missing: Vec<_> = REQUIRED_TABLES.iter().filter(|t| !tables.iter().any(|have| have == *t)).collect();
    if missing.len() == REQUIRED_TABLES.len() {
        return Err("not a Django database: it has none of Django's auth tables (auth_user, auth_group, …)".into());
    }
    if !missing.is_empty() {
        let names: Vec<_> = missing.iter().map(|t| t.to_string()).collect();
        return Err(format!(
            "not a complete Django database: no table {} (has `manage.py migrate` run?)",
            names.join(", ")
        ));
    }
    if sessions && !tables.iter().any(|t| t == "django_session") {
        return Err(
            "--sessions: the database has no django_session table (sessions not stored in the database?)".into()
        );
    }
    let mut data = DjangoData::default();
    for row in query(
        db,
        "SELECT CAST(id AS BIGINT) AS id, username, password, email, first_name, last_name, is_active, is_staff, \
         is_superuser, CAST(last_login AS TEXT) AS last_login, CAST(date_joined AS TEXT) AS date_joined \
         FROM auth_user ORDER BY id",
    )
    .await?
    {
        data.users.push(User {
            id: get(&row, "id")?,
            username: get(&row, "username")?,
            password: get(&row, "password")?,
            email: get(&row, "email")?,
            first_name: get(&row, "first_name")?,
            last_name: get(&row, "last_name")?,
            is_active: get(&row, "is_active")?,
            is_staff: get(&row, "is_staff")?,
            is_superuser: get(&row, "is_superuser")?,
            last_login: get::<Option<String>>(&row, "last_login")?.map(|s| parse_datetime(&s)).transpose()?,
            date_joined: parse_datetime(&get::<String>(&row, "date_joined")?)?,
        });
    }
    for row in query(db, "SELECT CAST(id AS BIGINT) AS id, name FROM auth_group ORDER BY id").await? {
        data.groups.push(Group { id: get(&row, "id")?, name: get(&row, "name")? });
    }
    for row in query(
        db,
        "SELECT CAST(p.id AS BIGINT) AS id, p.name, p.codename, ct.app_label FROM auth_permission p \
         LEFT JOIN django_content_type ct ON ct.id = p.content_type_id ORDER BY p.id",
    )
    .await?
    {
        data.permissions.push(Permission {
            id: get(&row, "id")?,
            name: get(&row, "name")?,
            app_label: get(&row, "app_label")?,
            codename: get(&row, "codename")?,
        });
    }
    data.user_groups = pairs(db, "auth_user_groups", "user_id", "group_id").await?;
    data.user_permissions = pairs(db, "auth_user_user_permissions", "user_id", "permission_id").await?;
    data.group_permissions = pairs(db, "auth_group_permissions", "group_id", "permission_id").await?;
    data.has_tokens = tables.iter().any(|t| t == "authtoken_token");
    if data.has_tokens {
        for row in query(
            db,
            "SELECT key, CAST(user_id AS BIGINT) AS user_id, CAST(created AS TEXT) AS created \
             FROM authtoken_token ORDER BY created",
        )
        .await?
        {
            data.tokens.push(Token {
                key: get(&row, "key")?,
                user_id: get(&row, "user_id")?,
                created: parse_datetime(&get::<String>(&row, "created")?)?,
            });
        }
    }
    if sessions {
        for row in
            query(db, "SELECT session_key, session_data, CAST(expire_date AS TEXT) AS expire_date FROM django_session")
                .await?
        {
            data.sessions.push(Session {
                key: get(&row, "session_key")?,
                data: get(&row, "session_data")?,
                expire_date: parse_datetime(&get::<String>(&row, "expire_date")?)?,
            });
        }
    }
    Ok(data)
}

async fn table_names(db: &DatabaseConnection) -> Result<Vec<String>, String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        _ => "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()",
    };
    let rows = query(db, sql).await.map_err(|e| match e {
        e if e.contains("file is not a database") => "not a Django database: the file is not an SQLite database".into(),
        e => e,
    })?;
    rows.iter().map(|r| get(r, "name")).collect()
}

async fn query(db: &DatabaseConnection, sql: &str) -> Result<Vec<QueryResult>, String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.map_err(|e| e.to_string())
}

async fn pairs(db: &DatabaseConnection, table: &str, left: &str, right: &str) -> Result<Vec<(i64, i64)>, String> {
    let sql = format!("SELECT CAST({left} AS BIGINT) AS l, CAST({right} AS BIGINT) AS r FROM {table} ORDER BY id");
    query(db, &sql).await?.iter().map(|row| Ok((get(row, "l")?, get(row, "r")?))).collect()
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T, String> {
    row.try_get("", column).map_err(|e| format!("column {column}: {e}"))
}

/// Django's timestamps as SQLite (naive UTC text), PostgreSQL (`…+00`) and dumpdata
/// (ISO 8601 with `Z`) write them.
pub fn parse_datetime(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(at) = DateTime::parse_from_str(s, format) {
            return Ok(at.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(at.and_utc());
        }
    }
    Err(format!("cannot read the timestamp {s:?}"))
}

// ---------------------------------------------------------------------------------------
// A dumpdata file.

/// Reads `manage.py dumpdata auth authtoken [contenttypes] --format json` output, with or
/// without natural keys. Content types are only in the file when `contenttypes` is dumped
/// too or `--natural-foreign` is used; without either, permissions cannot be named.
pub fn read_dump(text: &str) -> Result<DjangoData, String> {
    let records: Vec<Value> = serde_json::from_str(text).map_err(|e| format!("not a dumpdata JSON file: {e}"))?;
    let mut content_types: HashMap<i64, String> = HashMap::new();
    let mut raw_permissions = Vec::new();
    let mut raw_groups = Vec::new();
    let mut raw_users = Vec::new();
    let mut data = DjangoData::default();
    let mut natural_tokens = Vec::new();
    for (n, record) in records.iter().enumerate() {
        let model =
            record["model"].as_str().ok_or_else(|| format!("record {n}: no \"model\" (not a dumpdata file?)"))?;
        let fields = &record["fields"];
        if !fields.is_object() {
            return Err(format!("record {n} ({model}): no \"fields\" object"));
        }
        match model {
            "contenttypes.contenttype" => {
                let id = int(&record["pk"]).ok_or_else(|| format!("record {n} ({model}): no integer pk"))?;
                content_types.insert(id, text_field(fields, "app_label", n, model)?);
            }
            "auth.permission" => raw_permissions.push((n, record)),
            "auth.group" => raw_groups.push((n, record)),
            "auth.user" => raw_users.push((n, record)),
            "authtoken.token" | "authtoken.tokenproxy" => {
                data.has_tokens = true;
                if model == "authtoken.tokenproxy" {
                    continue;
                }
                let key = record["pk"].as_str().ok_or_else(|| format!("record {n} ({model}): no key"))?.to_owned();
                let user = &fields["user"];
                let created = parse_datetime(&text_field(fields, "created", n, model)?)?;
                match (int(user), user.as_array().and_then(|a| a.first()).and_then(Value::as_str)) {
                    (Some(user_id), _) => data.tokens.push(Token { key, user_id, created }),
                    // With natural keys the user is ["username"]: resolved once users are read.
                    (None, Some(username)) => natural_tokens.push((key, username.to_owned(), created)),
                    (None, None) => return Err(format!("record {n} ({model}): no user")),
                }
            }
            _ => {} // other apps' records are not ours to import
        }
    }
    if raw_users.is_empty() && raw_groups.is_empty() && raw_permissions.is_empty() {
        return Err("not a Django auth dump: it has no auth.user, auth.group or auth.permission records \
                    (dump with `manage.py dumpdata auth authtoken contenttypes --format json`)"
            .into());
    }
    // Natural keys: permissions are [codename, app_label, model], groups [name], users [username].
    let mut permission_ids: HashMap<(String, String), i64> = HashMap::new();
    for (next_id, (n, record)) in (1_i64..).zip(&raw_permissions) {
        let model = "auth.permission";
        let fields = &record["fields"];
        let id = int(&record["pk"]).unwrap_or(-next_id);
        let content_type = &fields["content_type"];
        let app_label = match (int(content_type), content_type.as_array()) {
            (Some(ct), _) => content_types.get(&ct).cloned(),
            (None, Some(natural)) => natural.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        if app_label.is_none() && int(content_type).is_some() && content_types.is_empty() {
            return Err(NO_CONTENT_TYPES.into());
        }
        let codename = text_field(fields, "codename", *n, model)?;
        if let Some(app) = &app_label {
            permission_ids.insert((app.clone(), codename.clone()), id);
        }
        data.permissions.push(Permission { id, name: text_field(fields, "name", *n, model)?, app_label, codename });
    }
    let permission_ref = |v: &Value, n: usize, model: &str| -> Result<i64, String> {
        if let Some(id) = int(v) {
            return Ok(id);
        }
        let parts: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        match parts.as_slice() {
            [codename, app_label, ..] => permission_ids
                .get(&((*app_label).to_owned(), (*codename).to_owned()))
                .copied()
                .ok_or_else(|| format!("record {n} ({model}): permission {app_label}.{codename} is not in the file")),
            _ => Err(format!("record {n} ({model}): unreadable permission reference {v}")),
        }
    };
    let mut group_ids: HashMap<String, i64> = HashMap::new();
    for (next_id, (n, record)) in (1_i64..).zip(&raw_groups) {
        let model = "auth.group";
        let fields = &record["fields"];
        let id = int(&record["pk"]).unwrap_or(-next_id);
        let name = text_field(fields, "name", *n, model)?;
        group_ids.insert(name.clone(), id);
        for p in list(fields, "permissions") {
            data.group_permissions.push((id, permission_ref(p, *n, model)?));
        }
        data.groups.push(Group { id, name });
    }
    let mut user_ids: HashMap<String, i64> = HashMap::new();
    for (next_id, (n, record)) in (1_i64..).zip(&raw_users) {
        let (n, model) = (*n, "auth.user");
        let fields = &record["fields"];
        let id = int(&record["pk"]).unwrap_or(-next_id);
        let username = text_field(fields, "username", n, model)?;
        user_ids.insert(username.clone(), id);
        for g in list(fields, "groups") {
            let group = match (int(g), g.as_array().and_then(|a| a.first()).and_then(Value::as_str)) {
                (Some(id), _) => id,
                (None, Some(name)) => *group_ids
                    .get(name)
                    .ok_or_else(|| format!("record {n} ({model}): group {name:?} is not in the file"))?,
                _ => return Err(format!("record {n} ({model}): unreadable group reference {g}")),
            };
            data.user_groups.push((id, group));
        }
        for p in list(fields, "user_permissions") {
            data.user_permissions.push((id, permission_ref(p, n, model)?));
        }
        let flag =
            |name: &str| fields[name].as_bool().ok_or_else(|| format!("record {n} ({model}): {name} is not a boolean"));
        data.users.push(User {
            id,
            password: text_field(fields, "password", n, model)?,
            email: fields["email"].as_str().unwrap_or_default().to_owned(),
            first_name: fields["first_name"].as_str().unwrap_or_default().to_owned(),
            last_name: fields["last_name"].as_str().unwrap_or_default().to_owned(),
            is_active: flag("is_active")?,
            is_staff: flag("is_staff")?,
            is_superuser: flag("is_superuser")?,
            last_login: match fields["last_login"].as_str() {
                Some(s) => Some(parse_datetime(s)?),
                None => None,
            },
            date_joined: parse_datetime(&text_field(fields, "date_joined", n, model)?)?,
            username,
        });
    }
    for (key, username, created) in natural_tokens {
        let user_id =
            *user_ids.get(&username).ok_or_else(|| format!("token for user {username:?}: no such user in the file"))?;
        data.tokens.push(Token { key, user_id, created });
    }
    Ok(data)
}

/// Plain `dumpdata auth authtoken` names each permission's content type by id only, and
/// the content types are another app's records: without them no permission can be named.
const NO_CONTENT_TYPES: &str = "the permissions in this file name their content type by id, and the file has no \
     contenttypes records to resolve it: dump them too (`manage.py dumpdata auth authtoken contenttypes --format \
     json`), or use --natural-foreign";

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn list<'a>(fields: &'a Value, name: &str) -> &'a [Value] {
    fields[name].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn text_field(fields: &Value, name: &str, n: usize, model: &str) -> Result<String, String> {
    fields[name].as_str().map(str::to_owned).ok_or_else(|| format!("record {n} ({model}): {name} is not a string"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_the_three_formats_django_writes() {
        let want = "2026-11-22T03:06:03.123456Z";
        for s in
            ["2026-11-22 03:06:03.123456", "2026-11-22 03:06:03.123456+00", want, "2026-11-22T03:06:03.123456+00:00"]
        {
            assert_eq!(parse_datetime(s).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Micros, true), want, "{s}");
        }
        assert_eq!(parse_datetime("2026-11-22 04:06:03+01").unwrap().to_rfc3339(), "2026-11-22T03:06:03+00:00");
        assert!(parse_datetime("yesterday").is_err());
    }

    #[test]
    fn a_dump_with_numeric_keys_and_content_types() {
        let dump = r#"[
          {"model": "contenttypes.contenttype", "pk": 4, "fields": {"app_label": "auth", "model": "user"}},
          {"model": "auth.permission", "pk": 14, "fields": {"name": "Can change user", "content_type": 4, "codename": "change_user"}},
          {"model": "auth.group", "pk": 1, "fields": {"name": "editors", "permissions": [14]}},
          {"model": "auth.user", "pk": 7, "fields": {"password": "pbkdf2_sha256$1$s$h", "last_login": null,
             "is_superuser": false, "username": "zoë", "first_name": "", "last_name": "", "email": "z@example.com",
             "is_staff": false, "is_active": true, "date_joined": "2026-01-02T03:04:05.678Z",
             "groups": [1], "user_permissions": [14]}},
          {"model": "authtoken.token", "pk": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
             "fields": {"user": 7, "created": "2026-01-02T03:04:05.678Z"}}
        ]"#;
        let data = read_dump(dump).unwrap();
        assert_eq!(data.users.len(), 1);
        assert_eq!(data.users[0].username, "zoë");
        assert_eq!(data.permissions[0].app_label.as_deref(), Some("auth"));
        assert_eq!((data.user_groups.clone(), data.user_permissions.clone()), (vec![(7, 1)], vec![(7, 14)]));
        assert_eq!(data.group_permissions, vec![(1, 14)]);
        assert_eq!(data.tokens[0].user_id, 7);
        assert!(data.has_tokens);
    }

    #[test]
    fn a_dump_with_natural_keys() {
        let dump = r#"[
          {"model": "auth.permission", "fields": {"name": "Can change user", "content_type": ["auth", "user"], "codename": "change_user"}},
          {"model": "auth.group", "fields": {"name": "editors", "permissions": [["change_user", "auth", "user"]]}},
          {"model": "auth.user", "pk": 3, "fields": {"password": "!", "last_login": "2026-01-02T03:04:05Z",
             "is_superuser": true, "username": "admin", "first_name": "", "last_name": "", "email": "",
             "is_staff": true, "is_active": true, "date_joined": "2026-01-02T03:04:05Z",
             "groups": [["editors"]], "user_permissions": [["change_user", "auth", "user"]]}},
          {"model": "authtoken.token", "pk": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
             "fields": {"user": ["admin"], "created": "2026-01-02T03:04:05Z"}}
        ]"#;
        let data = read_dump(dump).unwrap();
        let (group, permission) = (data.groups[0].id, data.permissions[0].id);
        assert_eq!(data.user_groups, vec![(3, group)]);
        assert_eq!(data.user_permissions, vec![(3, permission)]);
        assert_eq!(data.group_permissions, vec![(group, permission)]);
        assert_eq!(data.tokens[0].user_id, 3);
    }

    #[test]
    fn files_that_are_not_auth_dumps_are_refused() {
        assert!(read_dump("SQLite format 3").unwrap_err().starts_with("not a dumpdata JSON file"));
        assert!(read_dump("[]").unwrap_err().starts_with("not a Django auth dump"));
        assert!(read_dump(r#"[{"pk": 1}]"#).unwrap_err().contains("no \"model\""));
        let bad =
            r#"[{"model": "auth.user", "pk": 1, "fields": {"username": "a", "password": "x", "is_active": "yes"}}]"#;
        assert!(read_dump(bad).unwrap_err().contains("is_active is not a boolean"), "{:?}", read_dump(bad));
    }
}
