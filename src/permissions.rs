//! DRF's permission classes, plus Django's `app_label.codename` permissions.
use sea_orm::{ConnectionTrait, DbErr};

use crate::service::{identity::Identity, permissions::user_has_perm};

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
    /// Whether a request by nobody in particular gets through (the spec says so with `{}`).
    pub fn allows_anonymous(self, method: &str) -> bool {
        match self {
            Self::AllowAny => true,
            Self::IsAuthenticatedOrReadOnly => matches!(method, "GET" | "HEAD" | "OPTIONS"),
            Self::IsAuthenticated | Self::IsAdminUser | Self::HasPerm(_) => false,
        }
    }

    /// `has_permission` of the DRF class.
    pub async fn allows(self, who: Option<&Identity>, method: &str, db: &impl ConnectionTrait) -> Result<bool, DbErr> {
        if self.allows_anonymous(method) {
            return Ok(true);
        }
        Ok(match self {
            Self::AllowAny | Self::IsAuthenticated | Self::IsAuthenticatedOrReadOnly => who.is_some(),
            Self::IsAdminUser => who.is_some_and(|i| i.user.is_staff),
            Self::HasPerm(perm) => match who {
                // Boxed: see `api::auth::record_activity`.
                Some(identity) => Box::pin(user_has_perm(db, &identity.user, perm)).await?,
                None => false,
            },
        })
    }
}
