//! Forward auth for reverse proxies: the original request a proxy asks about, and what it
//! needs (`[[gateway.rules]]`, first match wins, else `auth.default_permission`). The
//! authenticator chain, its cache and revocations are the views' own; the HTTP side is
//! `api::gateway`.
use sea_orm::{ConnectionTrait, DbErr};

use crate::{
    config::{GatewayPolicy, GatewayRule},
    permissions::Permission,
    service::{identity::Identity, permissions},
};

/// The request the proxy is deciding about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: String,
    /// `https` or `http`.
    pub scheme: String,
    /// As sent, port included.
    pub host: Option<String>,
    /// Path and query.
    pub uri: String,
}

impl Original {
    /// nginx's `X-Original-URL` (`$scheme://$http_host$request_uri`).
    pub fn from_url(method: &str, url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let (host, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Some(Self {
            method: method.to_ascii_uppercase(),
            scheme: scheme.to_ascii_lowercase(),
            host: (!host.is_empty()).then(|| host.to_owned()),
            uri: uri.to_owned(),
        })
    }

    pub fn path(&self) -> &str {
        self.uri.split(['?', '#']).next().unwrap_or("/")
    }

    /// The URL to come back to after logging in.
    pub fn url(&self) -> String {
        match &self.host {
            Some(host) => format!("{}://{host}{}", self.scheme, self.uri),
            None => self.uri.clone(),
        }
    }

    /// The host without its port, lower-cased.
    fn host_name(&self) -> Option<String> {
        let host = self.host.as_deref()?;
        // "name", "name:8080", "[::1]", "[::1]:8080"
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => host.split(':').next().unwrap_or(host),
        };
        Some(name.to_ascii_lowercase())
    }
}

/// `[[gateway.rules]]`, in order.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<GatewayRule>);

impl Rules {
    pub fn new(rules: &[GatewayRule]) -> Self {
        Self(rules.to_vec())
    }

    /// The first rule's policy that matches the original request.
    pub fn policy_for(&self, original: &Original) -> Option<&GatewayPolicy> {
        let host = original.host_name();
        let path = original.path();
        self.0
            .iter()
            .find(|rule| {
                rule.host.as_deref().is_none_or(|pattern| host.as_deref().is_some_and(|h| host_matches(h, pattern)))
                    && path.starts_with(&rule.path)
                    && (rule.methods.is_empty() || rule.methods.contains(&original.method))
            })
            .map(|rule| &rule.policy)
    }
}

/// Exact (any case), or `*.example.com` for the subdomains of example.com.
fn host_matches(host: &str, pattern: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
        None => host == pattern,
    }
}

/// Whether `who` may make the original request under `policy`.
pub async fn allows(
    policy: &GatewayPolicy,
    who: Option<&Identity>,
    method: &str,
    db: &impl ConnectionTrait,
) -> Result<bool, DbErr> {
    let simple = match policy {
        GatewayPolicy::AllowAny => Permission::AllowAny,
        GatewayPolicy::IsAuthenticated => Permission::IsAuthenticated,
        GatewayPolicy::IsAdminUser => Permission::IsAdminUser,
        GatewayPolicy::IsAuthenticatedOrReadOnly => Permission::IsAuthenticatedOrReadOnly,
        GatewayPolicy::Perm(perm) => {
            return match who {
                Some(identity) => permissions::user_has_perm(db, &identity.user, perm).await,
                None => Ok(false),
            };
        }
        GatewayPolicy::Group(name) => {
            return match who {
                Some(identity) if identity.user.is_active => {
                    Ok(permissions::group_names(db, identity.user.id).await?.iter().any(|g| g == name))
                }
                _ => Ok(false),
            };
        }
    };
    simple.allows(who, method, db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(host: Option<&str>, path: &str, methods: &[&str], policy: GatewayPolicy) -> GatewayRule {
        GatewayRule {
            host: host.map(str::to_owned),
            path: path.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            policy,
        }
    }

    #[test]
    fn original_urls_are_split_as_nginx_sends_them() {
        let o = Original::from_url("get", "https://App.Example.com:8443/admin/x?y=1").unwrap();
        assert_eq!(
            (o.method.as_str(), o.scheme.as_str(), o.host.as_deref()),
            ("GET", "https", Some("App.Example.com:8443"))
        );
        assert_eq!((o.uri.as_str(), o.path()), ("/admin/x?y=1", "/admin/x"));
        assert_eq!(o.host_name().as_deref(), Some("app.example.com"));
        assert_eq!(o.url(), "https://App.Example.com:8443/admin/x?y=1");
        assert_eq!(Original::from_url("GET", "http://h").unwrap().uri, "/");
        assert!(Original::from_url("GET", "/no/scheme").is_none());
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = Rules::new(&[
            rule(Some("api.example.com"), "/admin/", &["POST", "DELETE"], GatewayPolicy::IsAdminUser),
            rule(Some("*.example.com"), "/public/", &[], GatewayPolicy::AllowAny),
            rule(None, "/reports/", &[], GatewayPolicy::Perm("reports.view".into())),
        ]);
        let policy = |method: &str, url: &str| rules.policy_for(&Original::from_url(method, url).unwrap()).cloned();
        assert_eq!(policy("POST", "http://api.example.com/admin/users"), Some(GatewayPolicy::IsAdminUser));
        assert_eq!(policy("GET", "http://api.example.com/admin/users"), None, "other methods fall through");
        assert_eq!(policy("GET", "http://a.example.com/public/x"), Some(GatewayPolicy::AllowAny));
        assert_eq!(policy("GET", "http://example.com/public/x"), None, "*. is for subdomains");
        assert_eq!(policy("GET", "http://evilexample.com/public/x"), None);
        assert_eq!(policy("GET", "http://other.test:81/reports/1"), Some(GatewayPolicy::Perm("reports.view".into())));
    }
}
