//! Django's users: checked (field limits, usernames unique ignoring case), then matched by
//! username to the users already here, with what changed in Django since.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{Problems, UserRow};
use crate::{
    django_import::{
        report::{Problem, Summary},
        source,
    },
    password::{self, Passwords},
    service::users,
    store::user,
};

/// Users: Django's field limits, and usernames unique ignoring case, in the source and
/// against the users already here.
pub(super) fn check_users(
    all: &[source::User],
    existing: &HashMap<String, user::Model>,
    passwords: &Passwords,
    problems: &mut Problems,
    summary: &mut Summary,
) -> Vec<source::User> {
    let mut users = Vec::new();
    let mut keys: HashMap<String, &source::User> = HashMap::new();
    for u in all {
        let key = user::username_key(&u.username);
        if let Some(reason) = user_problem(u, keys.get(&key).copied(), existing.get(&key)) {
            problems.add(format!("user {} {:?}", u.id, u.username), reason);
            continue;
        }
        keys.insert(key, u);
        summary.unreadable_hashes.extend(unreadable_hash(u, passwords));
        users.push(u.clone());
    }
    users
}

/// Why `u` cannot be imported, if it cannot: `first` is the user before it in the source
/// with the same username key, `here` the user here with that key.
fn user_problem(u: &source::User, first: Option<&source::User>, here: Option<&user::Model>) -> Option<String> {
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
        Some("empty username".into())
    } else if let Some((field, _, max)) = too_long {
        Some(format!("{field} longer than {max} characters"))
    } else if let Some(first) = first {
        Some(format!(
            "username differs only in case from user {} {:?}; usernames here are unique ignoring case \
             (rename one in Django first)",
            first.id, first.username
        ))
    } else {
        let here = here.filter(|here| here.username != u.username)?;
        Some(format!("username differs only in case from {:?}, a user already here", here.username))
    }
}

/// A warning for a user whose password hash no hasher here reads.
fn unreadable_hash(u: &source::User, passwords: &Passwords) -> Option<Problem> {
    if u.password.starts_with(password::UNUSABLE_PREFIX) || passwords.knows_format(&u.password) {
        return None;
    }
    let algorithm = u.password.split('$').next().unwrap_or_default();
    Some(Problem {
        row: format!("user {:?}", u.username),
        reason: format!(
            "password hash format {algorithm:?} is not supported: imported, but cannot log in until given a new \
             password (portcullis changepassword {})",
            u.username
        ),
    })
}

/// Each user to insert (keeping its Django id when no user here has it) or to match by
/// username to the user here.
pub(super) fn match_users(
    users: Vec<source::User>,
    existing: &HashMap<String, user::Model>,
) -> Vec<(source::User, UserRow)> {
    let taken: HashSet<i64> = existing.values().map(|u| u.id).collect();
    let row = |u: &source::User| match existing.get(&user::username_key(&u.username)) {
        Some(here) => UserRow::Here(updated(here, u).map(Box::new)),
        None => UserRow::New { keep_id: !taken.contains(&u.id) && u.id > 0 },
    };
    users
        .into_iter()
        .map(|u| {
            let row = row(&u);
            (u, row)
        })
        .collect()
}

/// The user here brought in line with Django, if anything differs. A password already
/// upgraded to argon2id here (by a login since the last import) is kept: it is the same
/// password, or a newer one set here.
fn updated(here: &user::Model, django: &source::User) -> Option<user::Model> {
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
            users::imported_security_stamp(here.id == django.id)
        } else {
            here.security_stamp.clone()
        },
        // A verification was of the old address.
        email_verified: here.email_verified && here.email == django.email,
        ..here.clone()
    };
    (&want != here).then_some(want)
}

fn same_millisecond(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    a.timestamp_millis() == b.timestamp_millis()
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
            email_verified: false,
        }
    }

    #[test]
    fn a_new_password_in_django_gives_a_simplejwt_stamp_only_under_the_django_id() {
        let stamp = |m: user::Model| m.security_stamp;
        assert!(updated(&here(1, "pbkdf2_sha256$a"), &django_user(1, "pbkdf2_sha256$a")).is_none(), "no change");
        let same_id = updated(&here(1, "pbkdf2_sha256$a"), &django_user(1, "pbkdf2_sha256$b")).unwrap();
        assert!(stamp(same_id).starts_with(users::IMPORTED_STAMP_PREFIX));
        // Matched by username under another id: Django's user 1 is not this user here.
        let other_id = updated(&here(2, "pbkdf2_sha256$a"), &django_user(1, "pbkdf2_sha256$b")).unwrap();
        let other = stamp(other_id);
        assert!(!other.starts_with(users::IMPORTED_STAMP_PREFIX) && other != "old", "{other}");
        // A hash upgraded here is kept, and so is the stamp.
        let upgraded = here(1, "$argon2id$v=19$x");
        assert!(updated(&upgraded, &django_user(1, "pbkdf2_sha256$b")).is_none());
    }
}
