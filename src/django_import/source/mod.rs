//! Reading a Django project's auth data: from its database (SQLite or PostgreSQL) or from
//! `manage.py dumpdata` JSON. Everything is read into memory first (100,000 users are a
//! few tens of megabytes), so the import can check every row before it writes any.
mod database;
mod dump;

use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::ImportError;

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

pub async fn read(source: &Source, sessions: bool) -> Result<DjangoData, ImportError> {
    match source {
        Source::Database(url) => database::read(url, sessions).await,
        Source::Dump(path) => {
            if sessions {
                return Err(ImportError::Source(
                    "--sessions needs the Django database: dumpdata files do not hold django_session".into(),
                ));
            }
            dump::read(path)
        }
    }
}

/// Django's timestamps as SQLite (naive UTC text), PostgreSQL (`…+00`) and dumpdata
/// (ISO 8601 with `Z`) write them.
fn parse_datetime(s: &str) -> Result<DateTime<Utc>, BadTimestamp> {
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
    Err(BadTimestamp(s.to_owned()))
}

/// A timestamp in none of the formats Django writes.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the timestamp {0:?}")]
struct BadTimestamp(String);

/// Inside each reader an error is a message saying where it is (`record 3 (auth.user): …`,
/// `column created: …`); a bad timestamp is one more.
impl From<BadTimestamp> for String {
    fn from(e: BadTimestamp) -> Self {
        e.to_string()
    }
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
}
