//! `[gateway]`: forward auth for reverse proxies and the login page.
use serde::Deserialize;

use super::{
    ConfigError, invalid,
    values::{AuthScheme, GatewayPolicy},
};

/// Forward auth for reverse proxies (`/authz/...`) and the login page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Empty: `auth.chain`.
    pub chain: Vec<AuthScheme>,
    /// Where anonymous browsers are sent from `/authz/forward-auth/`; empty: nowhere (401).
    pub login_url: String,
    /// Hosts `/accounts/login/?next=` may send a browser to, besides its own.
    pub allowed_redirect_hosts: Vec<String>,
    /// First match wins; none: `auth.default_permission`.
    pub rules: Vec<GatewayRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRule {
    /// Exact, or `*.example.com` (subdomains only); absent: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// A prefix of the original path.
    #[serde(default = "root")]
    pub path: String,
    /// Absent or empty: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    pub policy: GatewayPolicy,
}

fn root() -> String {
    "/".into()
}

impl Gateway {
    /// Rules that cannot be applied stop start-up, naming their index.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = self;
        if !g.login_url.is_empty() && !g.login_url.starts_with('/') && url::Url::parse(&g.login_url).is_err() {
            return Err(invalid("gateway.login_url", format!("{:?} is neither a path nor a URL", g.login_url)));
        }
        for (i, rule) in g.rules.iter().enumerate() {
            let key = format!("gateway.rules[{i}]");
            if !rule.path.starts_with('/') {
                return Err(invalid(&key, format!("path {:?} must start with \"/\"", rule.path)));
            }
            let host_ok = |h: &str| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
            if let Some(host) = &rule.host
                && !host_ok(host.strip_prefix("*.").unwrap_or(host))
            {
                return Err(invalid(&key, format!("host {host:?} must be a host name, or \"*.\" and a domain")));
            }
            if let Some(bad) = rule.methods.iter().find(|m| m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()))
            {
                return Err(invalid(&key, format!("method {bad:?} must be an HTTP method in capitals, e.g. \"POST\"")));
            }
        }
        Ok(())
    }
}
