//! Which authenticators and which permission each view has: DRF's per-view
//! `authentication_classes` and `permission_classes`, in one table. Authentication and
//! permissions run before routing, so an anonymous DELETE on `/protected/` is a 401/403,
//! not a 405, as in DRF; paths not listed here (health, docs, spec) are not DRF views.
use crate::permissions::Permission;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// `None`: `auth.chain`.
    pub chain: Option<&'static [&'static str]>,
    /// `None`: `auth.default_permission`.
    pub permission: Option<Permission>,
}

const fn view(permission: Option<Permission>) -> Policy {
    Policy { chain: None, permission }
}

const ANYONE: Policy = view(Some(Permission::AllowAny));
const SIGNED_IN: Policy = view(Some(Permission::IsAuthenticated));
const DEFAULT: Policy = view(None);
/// simplejwt's token views: `authentication_classes = ()`.
const NO_AUTHENTICATION: Policy = Policy { chain: Some(&[]), permission: Some(Permission::AllowAny) };

/// Paths without their trailing slash; `{}` matches one segment.
const ROUTES: &[(&str, Policy)] = &[
    ("/register", ANYONE),
    ("/login", ANYONE),
    ("/logout", ANYONE),
    ("/logoutall", SIGNED_IN),
    ("/csrf", ANYONE),
    ("/protected", DEFAULT),
    ("/dashboard", DEFAULT),
    ("/profile", Policy { chain: Some(&["token"]), permission: Some(Permission::IsAuthenticated) }),
    ("/whoami", SIGNED_IN),
    ("/session", DEFAULT),
    ("/session/data", Policy { chain: Some(&["session"]), permission: Some(Permission::IsAuthenticated) }),
    ("/sessions", SIGNED_IN),
    ("/sessions/{}", SIGNED_IN),
    ("/tokens", SIGNED_IN),
    ("/tokens/{}", SIGNED_IN),
    ("/password/change", SIGNED_IN),
    ("/api-token-auth", ANYONE),
    ("/api/token", NO_AUTHENTICATION),
    ("/api/token/refresh", NO_AUTHENTICATION),
    ("/api/token/verify", NO_AUTHENTICATION),
    ("/api/token/blacklist", NO_AUTHENTICATION),
    ("/publish", view(Some(Permission::HasPerm("articles.can_publish")))),
    ("/users", view(Some(Permission::IsAdminUser))),
    ("/audit", view(Some(Permission::IsAdminUser))),
    ("/audit/me", SIGNED_IN),
    ("/cookie/set", ANYONE),
    ("/cookie/get", ANYONE),
    ("/cookie/delete", ANYONE),
];

/// The policy of the view at `path`, if it is one.
pub fn policy_for(path: &str) -> Option<Policy> {
    route(path).map(|(_, policy)| *policy)
}

fn route(path: &str) -> Option<&'static (&'static str, Policy)> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    ROUTES.iter().find(|(pattern, _)| matches(pattern, path))
}

/// A bounded label for metrics: the route's pattern, or "unmatched".
pub fn route_label(path: &str) -> &'static str {
    if let Some((pattern, _)) = route(path) {
        return pattern;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    ["/healthz", "/openapi.json", "/docs", "/metrics", "/docs/oauth-receiver.html"]
        .into_iter()
        .find(|p| *p == path)
        .unwrap_or("unmatched")
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some("{}"), Some(seg)) if !seg.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// Every chain a view overrides, so they can be built once at start-up.
pub fn chain_overrides() -> impl Iterator<Item = &'static [&'static str]> {
    ROUTES.iter().filter_map(|(_, p)| p.chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_or_without_the_slash() {
        assert!(policy_for("/protected/").is_some());
        assert!(policy_for("/protected").is_some());
        assert!(policy_for("/sessions/abc/").is_some());
        assert!(policy_for("/sessions/abc/def").is_none());
        assert!(policy_for("/healthz").is_none());
        assert!(policy_for("/").is_none());
        assert_eq!(policy_for("/profile").and_then(|p| p.chain), Some(&["token"][..]));
        assert_eq!(route_label("/sessions/abc/"), "/sessions/{}");
        assert_eq!(route_label("/docs/"), "/docs");
        assert_eq!(route_label("/nope/x"), "unmatched");
    }
}
