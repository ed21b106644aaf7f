//! DRF's permission classes, plus Django's `app_label.codename` permissions.
use sea_orm::{ConnectionTrait, DbErr};

use crate::{authn::Identity, service::permissions::user_has_perm};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    AllowAny,
    IsAuthenticated,
    IsAdminUser,
    IsAuthenticatedOrReadOnly,
    /// Django's `user.has_perm("app_label.codename")` (superusers have every permission).
    HasPerm(&'static str),
}

impl Permission {
    /// The `auth.default_permission` names.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "allow_any" => Self::AllowAny,
            "is_authenticated" => Self::IsAuthenticated,
            "is_admin_user" => Self::IsAdminUser,
            "is_authenticated_or_read_only" => Self::IsAuthenticatedOrReadOnly,
            _ => return None,
        })
    }

    /// `has_permission` of the DRF class.
    pub async fn allows(self, who: Option<&Identity>, method: &str, db: &impl ConnectionTrait) -> Result<bool, DbErr> {
        Ok(match self {
            Self::AllowAny => true,
            Self::IsAuthenticated => who.is_some(),
            Self::IsAdminUser => who.is_some_and(|i| i.user.is_staff),
            Self::IsAuthenticatedOrReadOnly => who.is_some() || matches!(method, "GET" | "HEAD" | "OPTIONS"),
            Self::HasPerm(perm) => match who {
                Some(identity) => user_has_perm(db, &identity.user, perm).await?,
                None => false,
            },
        })
    }
}
