//! Which authenticators and which permission each view has: DRF's per-view
//! `authentication_classes` and `permission_classes`, in one table. It is the one source:
//! the authentication middleware enforces it (before routing, so an anonymous DELETE on
//! `/protected/` is a 401/403, not a 405, as in DRF), and the spec's per-operation
//! `security` and "Permission" line are derived from it (`spec`). Paths not listed here
//! (health, docs, spec) are not DRF views.
use std::sync::Arc;

use serde_json::{Value, json};

use crate::{
    authn::Chain,
    config::AuthScheme::{self, Basic, Jwt, Session, Token},
    permissions::Permission,
    state::AppState,
};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub chain: ViewChain,
    /// `None`: `auth.default_permission`.
    pub permission: Option<Permission>,
}

/// A view's `authentication_classes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewChain {
    /// `auth.chain` (DRF's `DEFAULT_AUTHENTICATION_CLASSES`).
    Default,
    /// `auth.chain`, then this one if the chain lacks it.
    DefaultAnd(AuthScheme),
    /// Exactly these, whatever `auth.chain` says (`&[]`: no authentication at all).
    Only(&'static [AuthScheme]),
}

impl ViewChain {
    /// The schemes the view runs, in order.
    pub fn schemes(self, default: &[AuthScheme]) -> Vec<AuthScheme> {
        match self {
            Self::Default => default.to_vec(),
            Self::DefaultAnd(extra) => {
                let mut schemes = default.to_vec();
                if !schemes.contains(&extra) {
                    schemes.push(extra);
                }
                schemes
            }
            Self::Only(schemes) => schemes.to_vec(),
        }
    }
}

const fn view(permission: Option<Permission>) -> Policy {
    Policy { chain: ViewChain::Default, permission }
}

const ANYONE: Policy = view(Some(Permission::AllowAny));
const SIGNED_IN: Policy = view(Some(Permission::IsAuthenticated));
const DEFAULT: Policy = view(None);
const STAFF: Policy = view(Some(Permission::IsAdminUser));
/// simplejwt's token views: `authentication_classes = ()`.
const NO_AUTHENTICATION: Policy = Policy { chain: ViewChain::Only(&[]), permission: Some(Permission::AllowAny) };
/// For other services (API.md "Token introspection"): any authenticator of `auth.chain`, or
/// Basic (a service account's username and password), and the permission.
const INTROSPECTION: Policy =
    Policy { chain: ViewChain::DefaultAnd(Basic), permission: Some(Permission::HasPerm("portcullis.introspect")) };

/// Paths without their trailing slash; `{}` matches one segment.
const ROUTES: &[(&str, Policy)] = &[
    ("/register", ANYONE),
    ("/login", ANYONE),
    ("/logout", ANYONE),
    ("/logoutall", SIGNED_IN),
    ("/csrf", ANYONE),
    ("/protected", DEFAULT),
    ("/dashboard", DEFAULT),
    ("/profile", Policy { chain: ViewChain::Only(&[Token]), permission: Some(Permission::IsAuthenticated) }),
    ("/whoami", SIGNED_IN),
    ("/session", DEFAULT),
    ("/session/data", Policy { chain: ViewChain::Only(&[Session]), permission: Some(Permission::IsAuthenticated) }),
    ("/sessions", SIGNED_IN),
    ("/sessions/{}", SIGNED_IN),
    ("/tokens", SIGNED_IN),
    ("/tokens/{}", SIGNED_IN),
    ("/password/change", SIGNED_IN),
    ("/password/reset", ANYONE),
    ("/password/reset/confirm", ANYONE),
    ("/registration/verify-email", ANYONE),
    ("/registration/resend-email", ANYONE),
    ("/api-token-auth", ANYONE),
    ("/api/token", NO_AUTHENTICATION),
    ("/api/token/refresh", NO_AUTHENTICATION),
    ("/api/token/verify", NO_AUTHENTICATION),
    ("/api/token/blacklist", NO_AUTHENTICATION),
    ("/mfa", SIGNED_IN),
    ("/mfa/totp/setup", SIGNED_IN),
    ("/mfa/totp/activate", SIGNED_IN),
    ("/mfa/totp/deactivate", SIGNED_IN),
    ("/mfa/recovery-codes", SIGNED_IN),
    ("/mfa/step-up", SIGNED_IN),
    // As `/login/`: anyone, and a session cookie presented is replaced (fixation).
    ("/mfa/verify", ANYONE),
    ("/publish", view(Some(Permission::HasPerm("articles.can_publish")))),
    ("/users", STAFF),
    ("/audit", STAFF),
    ("/audit/me", SIGNED_IN),
    ("/cookie/set", ANYONE),
    ("/cookie/get", ANYONE),
    ("/cookie/delete", ANYONE),
    ("/.well-known/jwks.json", NO_AUTHENTICATION),
    ("/.well-known/openid-configuration", NO_AUTHENTICATION),
    ("/introspect", INTROSPECTION),
];

/// The policy of the view at `path`, if it is one.
pub fn policy_for(path: &str) -> Option<Policy> {
    route(path).map(|(_, policy)| *policy)
}

/// Every request looks its path up here (authentication, headers, metrics), so the table
/// is indexed once: exact paths in a hash map, and the few with a `{}` segment by prefix.
struct Index {
    /// FxHash, not SipHash: the keys are this table's own, so there is no flooding to resist,
    /// and a lookup is a tenth of the cost.
    exact: rustc_hash::FxHashMap<&'static str, usize>,
    /// (the pattern before `{}`, what follows it, the row)
    parameterised: Vec<(&'static str, &'static str, usize)>,
}

static INDEX: std::sync::LazyLock<Index> = std::sync::LazyLock::new(|| {
    let mut index = Index { exact: rustc_hash::FxHashMap::default(), parameterised: Vec::new() };
    for (row, (pattern, _)) in ROUTES.iter().enumerate() {
        match pattern.split_once("{}") {
            Some((before, after)) => index.parameterised.push((before, after, row)),
            None => {
                index.exact.insert(pattern, row);
            }
        }
    }
    index
});

fn route(path: &str) -> Option<&'static (&'static str, Policy)> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let row = INDEX.exact.get(path).copied().or_else(|| {
        INDEX.parameterised.iter().find_map(|(before, after, row)| {
            let segment = path.strip_prefix(before)?.strip_suffix(after)?;
            (!segment.is_empty() && !segment.contains('/')).then_some(*row)
        })
    })?;
    ROUTES.get(row)
}

/// A bounded label for metrics: the route's pattern, or "unmatched".
pub fn route_label(path: &str) -> &'static str {
    if let Some((pattern, _)) = route(path) {
        return pattern;
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    [
        "/healthz",
        "/openapi.json",
        "/docs",
        "/metrics",
        "/docs/oauth-receiver.html",
        "/authz/auth-request",
        "/authz/forward-auth",
        "/accounts/login",
        "/accounts/logout",
    ]
    .into_iter()
    .find(|p| *p == path)
    .unwrap_or("unmatched")
}

/// Every chain a view runs, built once at start-up.
pub struct ViewChains {
    /// (FxHash: see `Index`.)
    chains: rustc_hash::FxHashMap<ViewChain, Chain>,
    default: Chain,
}

impl ViewChains {
    pub fn new(state: &AppState) -> Arc<Self> {
        let deps = state.authn();
        let default = &state.settings.auth.chain;
        let chains = ROUTES.iter().map(|(_, p)| (p.chain, Chain::new(&p.chain.schemes(default), &deps))).collect();
        Arc::new(Self { chains, default: Chain::new(default, &deps) })
    }

    /// The chain a view runs.
    pub fn of(&self, policy: &Policy) -> &Chain {
        self.chains.get(&policy.chain).unwrap_or(&self.default)
    }
}

/// What the spec documents, whatever the configuration (the served spec must not change
/// with it): a view on `auth.chain` lists the four schemes (the default chain, and Basic
/// for deployments that add it), and a view on `auth.default_permission` its default,
/// `is_authenticated`.
const DOCUMENTED_CHAIN: &[AuthScheme] = &[Session, Token, Jwt, Basic];

/// The OpenAPI `security` of an operation: one requirement per accepted scheme (the
/// session one with the CSRF header on unsafe methods), and `{}` when anonymous callers
/// get through.
pub fn documented_security(policy: &Policy, method: &str) -> Value {
    let unsafe_method = !matches!(method, "get" | "head" | "options" | "trace");
    let mut requirements: Vec<Value> = policy
        .chain
        .schemes(DOCUMENTED_CHAIN)
        .iter()
        .map(|scheme| match scheme {
            Session if unsafe_method => json!({"session": [], "csrf": []}),
            other => json!({ other.as_str(): [] }),
        })
        .collect();
    if documented_permission(policy).allows_anonymous(&method.to_ascii_uppercase()) {
        requirements.push(json!({}));
    }
    Value::Array(requirements)
}

fn documented_permission(policy: &Policy) -> Permission {
    policy.permission.unwrap_or(Permission::IsAuthenticated)
}

/// The line the spec adds to an operation's description about who may call it.
pub fn documented_requirement(policy: &Policy) -> Option<String> {
    let permission = documented_permission(policy);
    let line = match (policy.permission, permission) {
        (None, _) => "**Permission:** `auth.default_permission` (by default `is_authenticated`).".to_owned(),
        (_, Permission::AllowAny) => return None,
        (_, Permission::IsAuthenticated) => "**Permission:** any authenticated user.".to_owned(),
        (_, Permission::IsAdminUser) => "**Permission:** staff users (`is_staff`).".to_owned(),
        (_, Permission::IsAuthenticatedOrReadOnly) => {
            "**Permission:** anyone may read; writing needs an authenticated user.".to_owned()
        }
        (_, Permission::HasPerm(perm)) => {
            format!("**Permission:** `{perm}`, held directly, through a group, or as a superuser.")
        }
    };
    Some(line)
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
        assert_eq!(policy_for("/profile").map(|p| p.chain), Some(ViewChain::Only(&[Token])));
        assert_eq!(policy_for("/.well-known/jwks.json").map(|p| p.chain), Some(ViewChain::Only(&[])));
        let introspect = policy_for("/introspect/").unwrap().chain;
        assert_eq!(introspect.schemes(&[Session, Token]), [Session, Token, Basic]);
        assert_eq!(introspect.schemes(&[Basic, Jwt]), [Basic, Jwt]);
        assert_eq!(route_label("/sessions/abc/"), "/sessions/{}");
        assert_eq!(route_label("/docs/"), "/docs");
        assert_eq!(route_label("/nope/x"), "unmatched");
    }

    #[test]
    fn documented_security_follows_the_table() {
        let get = |path| documented_security(&policy_for(path).unwrap(), "get");
        assert_eq!(get("/profile"), json!([{"token": []}]));
        assert_eq!(get("/api/token"), json!([{}]));
        assert_eq!(get("/users"), json!([{"session": []}, {"token": []}, {"jwt": []}, {"basic": []}]));
        let login = documented_security(&policy_for("/login").unwrap(), "post");
        assert_eq!(login, json!([{"session": [], "csrf": []}, {"token": []}, {"jwt": []}, {"basic": []}, {}]));
        assert!(documented_requirement(&policy_for("/publish").unwrap()).unwrap().contains("articles.can_publish"));
        assert_eq!(documented_requirement(&policy_for("/login").unwrap()), None);
    }
}
