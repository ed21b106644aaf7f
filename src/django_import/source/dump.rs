//! Reading `manage.py dumpdata` JSON: the records sorted by model first, then permissions,
//! groups and users in that order, so that natural keys can name what came before.
use std::{collections::HashMap, path::Path};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{DjangoData, Group, ImportError, Permission, Token, User, parse_datetime};

pub(super) fn read(path: &Path) -> Result<DjangoData, ImportError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ImportError::Source(format!("cannot read {}: {e}", path.display())))?;
    read_dump(&text).map_err(|e| ImportError::Source(format!("{}: {e}", path.display())))
}

/// Reads `manage.py dumpdata auth authtoken [contenttypes] --format json` output, with or
/// without natural keys. Content types are only in the file when `contenttypes` is dumped
/// too or `--natural-foreign` is used; without either, permissions cannot be named.
fn read_dump(text: &str) -> Result<DjangoData, String> {
    let records: Vec<Value> = serde_json::from_str(text).map_err(|e| format!("not a dumpdata JSON file: {e}"))?;
    let mut data = DjangoData::default();
    let sorted = sort(&records, &mut data)?;
    if sorted.users.is_empty() && sorted.groups.is_empty() && sorted.permissions.is_empty() {
        return Err("not a Django auth dump: it has no auth.user, auth.group or auth.permission records \
                    (dump with `manage.py dumpdata auth authtoken contenttypes --format json`)"
            .into());
    }
    // Natural keys: permissions are [codename, app_label, model], groups [name], users [username].
    let permission_ids = permissions(&sorted.permissions, &sorted.content_types, &mut data)?;
    let group_ids = groups(&sorted.groups, &permission_ids, &mut data)?;
    let user_ids = users(&sorted.users, &group_ids, &permission_ids, &mut data)?;
    for (key, username, created) in sorted.natural_tokens {
        let user_id =
            *user_ids.get(&username).ok_or_else(|| format!("token for user {username:?}: no such user in the file"))?;
        data.tokens.push(Token { key, user_id, created });
    }
    Ok(data)
}

/// The records of a dump by model, each with its place in the file.
#[derive(Default)]
struct Sorted<'a> {
    content_types: HashMap<i64, String>,
    permissions: Vec<(usize, &'a Value)>,
    groups: Vec<(usize, &'a Value)>,
    users: Vec<(usize, &'a Value)>,
    /// Tokens naming their user by username (natural keys): resolved once users are read.
    natural_tokens: Vec<(String, String, DateTime<Utc>)>,
}

/// Sorts the records by model; tokens naming their user by id go straight into `data`.
fn sort<'a>(records: &'a [Value], data: &mut DjangoData) -> Result<Sorted<'a>, String> {
    let mut sorted = Sorted::default();
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
                sorted.content_types.insert(id, text_field(fields, "app_label", n, model)?);
            }
            "auth.permission" => sorted.permissions.push((n, record)),
            "auth.group" => sorted.groups.push((n, record)),
            "auth.user" => sorted.users.push((n, record)),
            "authtoken.token" => {
                data.has_tokens = true;
                token(n, record, &mut sorted.natural_tokens, data)?;
            }
            "authtoken.tokenproxy" => data.has_tokens = true,
            _ => {} // other apps' records are not ours to import
        }
    }
    Ok(sorted)
}

/// An `authtoken.token` record: into `data`, or into `natural` when it names its user by
/// username.
fn token(
    n: usize,
    record: &Value,
    natural: &mut Vec<(String, String, DateTime<Utc>)>,
    data: &mut DjangoData,
) -> Result<(), String> {
    let model = "authtoken.token";
    let fields = &record["fields"];
    let key = record["pk"].as_str().ok_or_else(|| format!("record {n} ({model}): no key"))?.to_owned();
    let user = &fields["user"];
    let created = parse_datetime(&text_field(fields, "created", n, model)?)?;
    match (int(user), natural_key(user)) {
        (Some(user_id), _) => data.tokens.push(Token { key, user_id, created }),
        // With natural keys the user is ["username"]: resolved once users are read.
        (None, Some(username)) => natural.push((key, username.to_owned(), created)),
        (None, None) => return Err(format!("record {n} ({model}): no user")),
    }
    Ok(())
}

/// Permissions by natural key: (app_label, codename) → id.
type PermissionIds = HashMap<(String, String), i64>;

/// Reads the permissions; returns their ids by natural key.
fn permissions(
    records: &[(usize, &Value)],
    content_types: &HashMap<i64, String>,
    data: &mut DjangoData,
) -> Result<PermissionIds, String> {
    let model = "auth.permission";
    let mut permission_ids = HashMap::new();
    for (next_id, (n, record)) in (1_i64..).zip(records) {
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
    Ok(permission_ids)
}

/// Reads the groups and their permissions; returns name → id, for natural keys.
fn groups(
    records: &[(usize, &Value)],
    permission_ids: &PermissionIds,
    data: &mut DjangoData,
) -> Result<HashMap<String, i64>, String> {
    let model = "auth.group";
    let mut group_ids = HashMap::new();
    for (next_id, (n, record)) in (1_i64..).zip(records) {
        let fields = &record["fields"];
        let id = int(&record["pk"]).unwrap_or(-next_id);
        let name = text_field(fields, "name", *n, model)?;
        group_ids.insert(name.clone(), id);
        for p in list(fields, "permissions") {
            data.group_permissions.push((id, permission_ref(p, permission_ids, *n, model)?));
        }
        data.groups.push(Group { id, name });
    }
    Ok(group_ids)
}

/// Reads the users, their groups and permissions; returns username → id, for natural keys.
fn users(
    records: &[(usize, &Value)],
    group_ids: &HashMap<String, i64>,
    permission_ids: &PermissionIds,
    data: &mut DjangoData,
) -> Result<HashMap<String, i64>, String> {
    let mut user_ids = HashMap::new();
    for (next_id, (n, record)) in (1_i64..).zip(records) {
        let id = int(&record["pk"]).unwrap_or(-next_id);
        let user = user(*n, id, &record["fields"], group_ids, permission_ids, data)?;
        user_ids.insert(user.username.clone(), id);
        data.users.push(user);
    }
    Ok(user_ids)
}

/// One `auth.user` record, under `id`; its groups and permissions go into `data`.
fn user(
    n: usize,
    id: i64,
    fields: &Value,
    group_ids: &HashMap<String, i64>,
    permission_ids: &PermissionIds,
    data: &mut DjangoData,
) -> Result<User, String> {
    let model = "auth.user";
    let username = text_field(fields, "username", n, model)?;
    for g in list(fields, "groups") {
        let group = match (int(g), natural_key(g)) {
            (Some(id), _) => id,
            (None, Some(name)) => *group_ids
                .get(name)
                .ok_or_else(|| format!("record {n} ({model}): group {name:?} is not in the file"))?,
            _ => return Err(format!("record {n} ({model}): unreadable group reference {g}")),
        };
        data.user_groups.push((id, group));
    }
    for p in list(fields, "user_permissions") {
        data.user_permissions.push((id, permission_ref(p, permission_ids, n, model)?));
    }
    let flag =
        |name: &str| fields[name].as_bool().ok_or_else(|| format!("record {n} ({model}): {name} is not a boolean"));
    Ok(User {
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
    })
}

/// A permission by id, or by natural key ([codename, app_label, model]).
fn permission_ref(v: &Value, permission_ids: &PermissionIds, n: usize, model: &str) -> Result<i64, String> {
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
}

/// Plain `dumpdata auth authtoken` names each permission's content type by id only, and
/// the content types are another app's records: without them no permission can be named.
const NO_CONTENT_TYPES: &str = "the permissions in this file name their content type by id, and the file has no \
     contenttypes records to resolve it: dump them too (`manage.py dumpdata auth authtoken contenttypes --format \
     json`), or use --natural-foreign";

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// The first part of a natural key (`["username"]`, `["name"]`).
fn natural_key(v: &Value) -> Option<&str> {
    v.as_array().and_then(|a| a.first()).and_then(Value::as_str)
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
