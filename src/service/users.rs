//! Creating users and changing passwords, with Django's validation and messages.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::{FieldErrors, ServiceError};
use crate::{
    crypto,
    password::{
        Passwords, Verdict,
        validators::{UserAttributes, validate_password, validate_username},
    },
    store::{self, user},
};

pub const USERNAME_TAKEN: &str = "A user with that username already exists.";
/// Django's model field sizes (`AbstractUser`), as DRF's ModelSerializer reports them.
const MAX_NAME: usize = 150;
const MAX_EMAIL: usize = 254;
pub const MAX_PASSWORD: usize = 128;

/// What a new account is made of, before validation.
#[derive(Debug, Default, Clone)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    pub is_staff: bool,
    pub is_superuser: bool,
    /// The email is known to be theirs already (an operator's `createsuperuser`).
    pub email_verified: bool,
}

/// Validates `new` as Django's `User` model, DRF's `ModelSerializer` and
/// `validate_password` would, adding to `errors` (fields already in `errors`, from a
/// type check upstream, are skipped). Normalises the username (NFKC) and the email's domain.
pub async fn validate_new_user(
    db: &impl ConnectionTrait,
    new: &mut NewUser,
    errors: &mut FieldErrors,
) -> Result<(), ServiceError> {
    if !errors.has("username") {
        match validate_username(&new.username) {
            Ok(normalized) => {
                new.username = normalized;
                if username_taken(db, &new.username).await? {
                    errors.add("username", USERNAME_TAKEN);
                }
            }
            Err(messages) => messages.into_iter().for_each(|m| errors.add("username", m)),
        }
    }
    if !errors.has("email") && !new.email.is_empty() {
        match normalize_email(&new.email) {
            Some(email) if email.chars().count() <= MAX_EMAIL => new.email = email,
            Some(_) => errors.add("email", max_length_message(MAX_EMAIL)),
            None => errors.add("email", "Enter a valid email address."),
        }
    }
    for (field, value) in [("first_name", &new.first_name), ("last_name", &new.last_name)] {
        if !errors.has(field) && value.chars().count() > MAX_NAME {
            errors.add(field, max_length_message(MAX_NAME));
        }
    }
    if !errors.has("password") {
        let attrs = UserAttributes {
            username: &new.username,
            first_name: &new.first_name,
            last_name: &new.last_name,
            email: &new.email,
        };
        validate_password(&new.password, &attrs).into_iter().for_each(|m| errors.add("password", m));
    }
    Ok(())
}

/// DRF's CharField `max_length` message.
pub fn max_length_message(max: usize) -> String {
    format!("Ensure this field has no more than {max} characters.")
}

/// Creates a validated user. A concurrent registration of the same name that wins the race
/// turns into the same field error as a name taken earlier, never a 500.
pub async fn create_user(
    db: &impl ConnectionTrait,
    passwords: &Passwords,
    new: NewUser,
) -> Result<user::Model, ServiceError> {
    let hash = passwords.hash(new.password).await?;
    let now = Utc::now();
    let email_verified = new.email_verified && !new.email.is_empty();
    let model = user::ActiveModel {
        username_key: Set(user::username_key(&new.username)),
        username: Set(new.username),
        password: Set(hash),
        email: Set(new.email),
        first_name: Set(new.first_name),
        last_name: Set(new.last_name),
        is_active: Set(true),
        is_staff: Set(new.is_staff),
        is_superuser: Set(new.is_superuser),
        last_login: Set(None),
        date_joined: Set(now),
        security_stamp: Set(new_security_stamp()),
        email_verified: Set(email_verified),
        ..Default::default()
    };
    model.insert(db).await.map_err(|err| {
        if store::is_unique_violation(&err) {
            ServiceError::Invalid(FieldErrors::single("username", USERNAME_TAKEN))
        } else {
            ServiceError::Db(err)
        }
    })
}

/// Validates and creates in one step (registration, `createsuperuser`).
pub async fn register(
    db: &impl ConnectionTrait,
    passwords: &Passwords,
    mut new: NewUser,
    mut errors: FieldErrors,
) -> Result<user::Model, ServiceError> {
    validate_new_user(db, &mut new, &mut errors).await?;
    errors.into_result()?;
    create_user(db, passwords, new).await
}

pub async fn username_taken(db: &impl ConnectionTrait, username: &str) -> Result<bool, ServiceError> {
    let found = user::Entity::find().filter(user::Column::UsernameKey.eq(user::username_key(username))).one(db).await?;
    Ok(found.is_some())
}

/// Exact (case-sensitive) lookup, as Django's `get_by_natural_key`.
pub async fn find_by_username(db: &impl ConnectionTrait, username: &str) -> Result<Option<user::Model>, ServiceError> {
    Ok(user::Entity::find().filter(user::Column::Username.eq(username)).one(db).await?)
}

pub async fn find_by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<user::Model>, ServiceError> {
    Ok(user::Entity::find_by_id(id).one(db).await?)
}

/// Django's `PasswordResetForm.get_users`: active users whose email matches, ignoring case,
/// and who have a usable password (Django's unusable ones start with "!").
pub async fn active_with_email(db: &impl ConnectionTrait, email: &str) -> Result<Vec<user::Model>, ServiceError> {
    use sea_orm::{
        ExprTrait,
        sea_query::{Expr, Func},
    };
    let users = user::Entity::find()
        .filter(Expr::expr(Func::lower(Expr::col(user::Column::Email))).eq(email.to_lowercase()))
        .filter(user::Column::IsActive.eq(true))
        .all(db)
        .await?;
    Ok(users.into_iter().filter(|u| !u.password.starts_with('!')).collect())
}

/// Marks `email` as the user's verified address, once: `false` when it is verified already
/// or the user's address is no longer `email`.
pub async fn mark_email_verified(db: &impl ConnectionTrait, id: i64, email: &str) -> Result<bool, ServiceError> {
    let done = user::Entity::update_many()
        .col_expr(user::Column::EmailVerified, sea_orm::sea_query::Expr::value(true))
        .filter(user::Column::Id.eq(id))
        .filter(user::Column::Email.eq(email))
        .filter(user::Column::EmailVerified.eq(false))
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

pub const PASSWORD_CHANGED_MEANWHILE: &str = "The password was changed by another request; try again.";

/// Sets a new password after Django's validators, rotating the security stamp so every
/// session and token issued under the old password stops working. It applies only over the
/// password `account` holds (compare-and-swap): of two changes racing from the same state
/// (a reset link submitted twice at once), one wins and the other is a `Conflict`.
pub async fn set_password(
    db: &impl ConnectionTrait,
    passwords: &Passwords,
    account: user::Model,
    password: String,
) -> Result<user::Model, ServiceError> {
    let attrs = UserAttributes {
        username: &account.username,
        first_name: &account.first_name,
        last_name: &account.last_name,
        email: &account.email,
    };
    let mut errors = FieldErrors::default();
    validate_password(&password, &attrs).into_iter().for_each(|m| errors.add("password", m));
    errors.into_result()?;
    let hash = passwords.hash(password).await?;
    let stamp = new_security_stamp();
    let done = user::Entity::update_many()
        .col_expr(user::Column::Password, sea_orm::sea_query::Expr::value(hash.clone()))
        .col_expr(user::Column::SecurityStamp, sea_orm::sea_query::Expr::value(stamp.clone()))
        .filter(user::Column::Id.eq(account.id))
        .filter(user::Column::Password.eq(account.password.clone()))
        .exec(db)
        .await?;
    if done.rows_affected == 0 {
        return Err(ServiceError::Conflict(PASSWORD_CHANGED_MEANWHILE));
    }
    Ok(user::Model { password: hash, security_stamp: stamp, ..account })
}

/// What a password check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Valid(Box<user::Model>),
    /// Wrong password, unknown user or inactive user: one answer for all three. `known`
    /// (whether the username exists) is for the audit trail, never for the client.
    Invalid {
        known: bool,
    },
}

/// Django's `authenticate()` with ModelBackend, hardened: an unknown user costs one dummy
/// hash so the timing tells nothing; inactive users are refused like a wrong password; a
/// correct password under an outdated hash is rehashed now (Django's `must_update`).
/// Throttling is the caller's (`accounts`), around this.
pub async fn check_password(
    db: &impl ConnectionTrait,
    passwords: &Passwords,
    username: &str,
    password: &str,
) -> Result<Checked, ServiceError> {
    let account = find_by_username(db, username).await?;
    let verdict = passwords.verify(password.to_owned(), account.as_ref().map(|a| a.password.clone())).await?;
    match (account, verdict) {
        (Some(account), Verdict::Match { upgrade }) if account.is_active => {
            if upgrade {
                let hash = passwords.hash(password.to_owned()).await?;
                let mut active: user::ActiveModel = account.clone().into();
                active.password = Set(hash);
                return Ok(Checked::Valid(Box::new(active.update(db).await?)));
            }
            Ok(Checked::Valid(Box::new(account)))
        }
        (account, _) => Ok(Checked::Invalid { known: account.is_some() }),
    }
}

/// Django's `update_last_login`.
pub async fn record_login(db: &impl ConnectionTrait, user_id: i64) -> Result<(), ServiceError> {
    user::Entity::update_many()
        .col_expr(user::Column::LastLogin, sea_orm::sea_query::Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Rotates the security stamp: every session and JWT issued before stops working.
pub async fn rotate_stamp(db: &impl ConnectionTrait, account: user::Model) -> Result<user::Model, ServiceError> {
    let mut active: user::ActiveModel = account.into();
    active.security_stamp = Set(new_security_stamp());
    Ok(active.update(db).await?)
}

/// Sets `is_active`; returns the user, or `NotFound`.
pub async fn set_active(db: &impl ConnectionTrait, username: &str, active: bool) -> Result<user::Model, ServiceError> {
    let account = find_by_username(db, username)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("user '{username}' does not exist")))?;
    let mut model: user::ActiveModel = account.into();
    model.is_active = Set(active);
    Ok(model.update(db).await?)
}

pub fn new_security_stamp() -> String {
    crypto::random_hex(16)
}

/// What imported users' security stamps start with. JWTs simplejwt issued carry no stamp
/// claim; they are accepted only while the user's stamp is still the one the import gave
/// (a password change or "log out everywhere" replaces it, and with it those tokens).
pub const IMPORTED_STAMP_PREFIX: &str = "django:";

/// A fresh stamp for a user imported from Django. Only a user here under its Django id may
/// accept simplejwt's stamp-less tokens, whose `user_id` claim is that id: anyone else under
/// that id would be impersonated by them.
pub fn imported_security_stamp(under_django_id: bool) -> String {
    if under_django_id { format!("{IMPORTED_STAMP_PREFIX}{}", crypto::random_hex(16)) } else { new_security_stamp() }
}

/// Django's `normalize_email` (lower-cased domain) after a check close to its
/// `EmailValidator`; `None` when the address is not valid.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim();
    let (local, domain) = email.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let domain_ok = {
        let labels: Vec<&str> = domain.split('.').collect();
        labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
            && labels.last().is_some_and(|tld| tld.chars().count() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()))
    };
    (local_ok && domain_ok && email.len() <= 320).then(|| format!("{local}@{}", domain.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails_are_checked_and_domains_lowercased() {
        assert_eq!(normalize_email("John@Example.COM").as_deref(), Some("John@example.com"));
        assert_eq!(normalize_email("a.b+c@sub.example.org").as_deref(), Some("a.b+c@sub.example.org"));
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "john@example",
            "jo hn@example.com",
            "john@-x.com",
            "john..x@example.com",
            "john@example.123",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
    }
}
