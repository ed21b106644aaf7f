//! Reading a Django database (SQLite or PostgreSQL): one query a table.
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, QueryResult, Statement};

use super::{DjangoData, Group, ImportError, Permission, Session, Token, User, parse_datetime, redact};

const REQUIRED_TABLES: [&str; 7] = [
    "auth_user",
    "auth_group",
    "auth_permission",
    "django_content_type",
    "auth_user_groups",
    "auth_user_user_permissions",
    "auth_group_permissions",
];

const NOT_SQLITE: &str = "not a Django database: the file is not an SQLite database";

pub(super) async fn read(url: &str, sessions: bool) -> Result<DjangoData, ImportError> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false).max_connections(1);
    let shown = redact(url);
    let db = Database::connect(opts).await.map_err(|e| {
        ImportError::Source(match e.to_string() {
            e if e.contains("file is not a database") => NOT_SQLITE.into(),
            e => format!("cannot open the Django database {shown}: {e}"),
        })
    })?;
    let result = read_tables(&db, sessions).await.map_err(|e| ImportError::Source(format!("{shown}: {e}")));
    let _ = db.close().await;
    result
}

async fn read_tables(db: &DatabaseConnection, sessions: bool) -> Result<DjangoData, String> {
    let tables = table_names(db).await?;
    check_tables(&tables, sessions)?;
    let has_tokens = tables.iter().any(|t| t == "authtoken_token");
    Ok(DjangoData {
        users: users(db).await?,
        groups: groups(db).await?,
        permissions: permissions(db).await?,
        user_groups: pairs(db, "auth_user_groups", "user_id", "group_id").await?,
        user_permissions: pairs(db, "auth_user_user_permissions", "user_id", "permission_id").await?,
        group_permissions: pairs(db, "auth_group_permissions", "group_id", "permission_id").await?,
        tokens: if has_tokens { tokens(db).await? } else { Vec::new() },
        has_tokens,
        sessions: if sessions { self::sessions(db).await? } else { Vec::new() },
    })
}

/// Django's auth tables are all there (and `django_session`, when sessions are wanted).
fn check_tables(tables: &[String], sessions: bool) -> Result<(), String> {
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
    Ok(())
}

async fn users(db: &DatabaseConnection) -> Result<Vec<User>, String> {
    let sql = "SELECT CAST(id AS BIGINT) AS id, username, password, email, first_name, last_name, is_active, \
               is_staff, is_superuser, CAST(last_login AS TEXT) AS last_login, \
               CAST(date_joined AS TEXT) AS date_joined FROM auth_user ORDER BY id";
    rows(db, sql, |row| {
        Ok(User {
            id: get(row, "id")?,
            username: get(row, "username")?,
            password: get(row, "password")?,
            email: get(row, "email")?,
            first_name: get(row, "first_name")?,
            last_name: get(row, "last_name")?,
            is_active: get(row, "is_active")?,
            is_staff: get(row, "is_staff")?,
            is_superuser: get(row, "is_superuser")?,
            last_login: get::<Option<String>>(row, "last_login")?.map(|s| parse_datetime(&s)).transpose()?,
            date_joined: parse_datetime(&get::<String>(row, "date_joined")?)?,
        })
    })
    .await
}

async fn groups(db: &DatabaseConnection) -> Result<Vec<Group>, String> {
    let sql = "SELECT CAST(id AS BIGINT) AS id, name FROM auth_group ORDER BY id";
    rows(db, sql, |row| Ok(Group { id: get(row, "id")?, name: get(row, "name")? })).await
}

async fn permissions(db: &DatabaseConnection) -> Result<Vec<Permission>, String> {
    let sql = "SELECT CAST(p.id AS BIGINT) AS id, p.name, p.codename, ct.app_label FROM auth_permission p \
               LEFT JOIN django_content_type ct ON ct.id = p.content_type_id ORDER BY p.id";
    rows(db, sql, |row| {
        Ok(Permission {
            id: get(row, "id")?,
            name: get(row, "name")?,
            app_label: get(row, "app_label")?,
            codename: get(row, "codename")?,
        })
    })
    .await
}

async fn tokens(db: &DatabaseConnection) -> Result<Vec<Token>, String> {
    let sql = "SELECT key, CAST(user_id AS BIGINT) AS user_id, CAST(created AS TEXT) AS created \
               FROM authtoken_token ORDER BY created";
    rows(db, sql, |row| {
        Ok(Token {
            key: get(row, "key")?,
            user_id: get(row, "user_id")?,
            created: parse_datetime(&get::<String>(row, "created")?)?,
        })
    })
    .await
}

async fn sessions(db: &DatabaseConnection) -> Result<Vec<Session>, String> {
    let sql = "SELECT session_key, session_data, CAST(expire_date AS TEXT) AS expire_date FROM django_session";
    rows(db, sql, |row| {
        Ok(Session {
            key: get(row, "session_key")?,
            data: get(row, "session_data")?,
            expire_date: parse_datetime(&get::<String>(row, "expire_date")?)?,
        })
    })
    .await
}

async fn table_names(db: &DatabaseConnection) -> Result<Vec<String>, String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        _ => "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()",
    };
    let rows = query(db, sql).await.map_err(|e| match e {
        e if e.contains("file is not a database") => NOT_SQLITE.into(),
        e => e,
    })?;
    rows.iter().map(|r| get(r, "name")).collect()
}

async fn query(db: &DatabaseConnection, sql: &str) -> Result<Vec<QueryResult>, String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.map_err(|e| e.to_string())
}

/// Every row `sql` returns, each read by `read`; the first row that cannot be read stops it.
async fn rows<T>(
    db: &DatabaseConnection,
    sql: &str,
    read: impl Fn(&QueryResult) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    query(db, sql).await?.iter().map(read).collect()
}

async fn pairs(db: &DatabaseConnection, table: &str, left: &str, right: &str) -> Result<Vec<(i64, i64)>, String> {
    let sql = format!("SELECT CAST({left} AS BIGINT) AS l, CAST({right} AS BIGINT) AS r FROM {table} ORDER BY id");
    rows(db, &sql, |row| Ok((get(row, "l")?, get(row, "r")?))).await
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T, String> {
    row.try_get("", column).map_err(|e| format!("column {column}: {e}"))
}
