//! Accounts and what they may do: creation, activation, Django-style permissions and groups.
use serde_json::json;

use super::Accounts;
use crate::{
    events::EventKind,
    service::{
        FieldErrors, ServiceError,
        identity::Origin,
        permissions,
        users::{self, NewUser},
    },
    store::user,
};

impl Accounts {
    /// Validates and creates a user (`POST /register/`, `createsuperuser`). `errors` holds
    /// what the door's own type checks found already.
    pub async fn register(
        &self,
        new: NewUser,
        errors: FieldErrors,
        origin: &Origin,
    ) -> Result<user::Model, ServiceError> {
        let user = users::register(&self.db, &self.passwords, new, errors).await?;
        self.emit(EventKind::UserCreated, origin, Some(&user), None).await;
        self.after_registration(&user, origin);
        Ok(user)
    }

    /// Deactivating stops every session, token and JWT of the user at once (they are checked
    /// against `is_active` on every use); activating lets them work again, as in Django.
    pub async fn set_active(&self, username: &str, active: bool, origin: &Origin) -> Result<user::Model, ServiceError> {
        let user = users::set_active(&self.db, username, active).await?;
        let kind = if active { EventKind::UserActivated } else { EventKind::UserDeactivated };
        self.emit(kind, origin, Some(&user), None).await;
        Ok(user)
    }

    /// Gives a user `app_label.codename`; `false` when they had it already.
    pub async fn grant(&self, username: &str, perm: &str, origin: &Origin) -> Result<bool, ServiceError> {
        let user = self.user(username).await?;
        let added = permissions::grant(&self.db, &user, perm).await?;
        if added {
            self.emit(EventKind::PermissionGranted, origin, Some(&user), Some(perm.to_owned())).await;
        }
        Ok(added)
    }

    /// Takes `app_label.codename` from a user; `false` when they did not have it.
    pub async fn revoke_permission(&self, username: &str, perm: &str, origin: &Origin) -> Result<bool, ServiceError> {
        let user = self.user(username).await?;
        let removed = permissions::revoke(&self.db, &user, perm).await?;
        if removed {
            self.emit(EventKind::PermissionRevoked, origin, Some(&user), Some(perm.to_owned())).await;
        }
        Ok(removed)
    }

    /// Gives every member of a group (created if missing) `app_label.codename`.
    pub async fn grant_group(&self, group: &str, perm: &str, origin: &Origin) -> Result<bool, ServiceError> {
        let added = permissions::grant_group(&self.db, group, perm).await?;
        if added {
            let ctx = origin.event(None, Some(perm.to_owned())).with_detail(json!({"group": group}));
            self.emit_with(EventKind::PermissionGranted, ctx).await;
        }
        Ok(added)
    }

    /// Puts a user in a group (created if missing); `false` when they were in it already.
    pub async fn add_to_group(&self, username: &str, group: &str, origin: &Origin) -> Result<bool, ServiceError> {
        let user = self.user(username).await?;
        let added = permissions::add_to_group(&self.db, &user, group).await?;
        if added {
            let ctx = origin.event(Some(&user), None).with_detail(json!({"group": group}));
            self.emit_with(EventKind::GroupJoined, ctx).await;
        }
        Ok(added)
    }
}
