//! Settings: defaults compiled in from `config/default.toml`, then the `--config` file,
//! `DATABASE_URL`, `PORTCULLIS_<SECTION>__<KEY>` variables, and command-line flags.
//!
//! Every section denies unknown fields and every key is required in the merged result, so a
//! typo or a wrong type stops start-up with a message naming the key instead of being ignored.
use std::{fmt, net::SocketAddr, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::Deserialize;

use crate::throttle::Rate;

/// The documented defaults, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: Server,
    pub database: Database,
    pub password: Password,
    pub auth: Auth,
    pub session: Session,
    pub csrf: Csrf,
    pub token: Token,
    pub jwt: Jwt,
    pub cache: Cache,
    pub throttle: Throttle,
    pub metrics: Metrics,
    pub audit: Audit,
    pub log: Log,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub enabled: bool,
    pub bind: String,
    pub token: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    pub retention_days: u32,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub bind: String,
    pub trusted_proxies: Vec<String>,
    pub max_body_bytes: usize,
    pub shutdown_timeout: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: Secret,
    pub schema: String,
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout: u64,
    pub acquire_timeout: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Password {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hash_workers: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub chain: Vec<String>,
    pub default_permission: String,
    pub session_challenge: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub cookie_name: String,
    pub cookie_age: u64,
    pub cookie_secure: bool,
    pub cookie_samesite: String,
    pub expire_at_browser_close: bool,
    pub save_every_request: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Csrf {
    pub cookie_name: String,
    pub header_name: String,
    pub cookie_secure: bool,
    pub trusted_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub keyword: String,
    pub ttl: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    pub algorithm: String,
    pub signing_key: Secret,
    pub private_key_file: String,
    pub public_key_file: String,
    pub access_token_lifetime: u64,
    pub refresh_token_lifetime: u64,
    pub rotate_refresh_tokens: bool,
    pub blacklist_after_rotation: bool,
    pub leeway: u64,
    pub audience: String,
    pub issuer: String,
    pub auth_header_types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    pub ttl: u64,
    pub notify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub backend: String,
    pub redis_url: Secret,
    pub login: String,
    pub login_ip: String,
    pub anon: String,
    pub user: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: String,
}

/// A configuration value that must never reach a log: `Debug` prints a placeholder.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "[redacted]" })
    }
}

/// Overrides given on the command line, applied last.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<String>,
}

pub const AUTHENTICATORS: [&str; 4] = ["session", "token", "jwt", "basic"];
pub const PERMISSIONS: [&str; 4] = ["allow_any", "is_authenticated", "is_admin_user", "is_authenticated_or_read_only"];
const ALGORITHMS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];

/// Builds the layered configuration (see the module docs).
pub fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, String> {
    let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    fig = fig
        .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
        // Only SECTION__KEY variables are settings; PORTCULLIS_CONFIG and the CLI's own
        // variables (PORTCULLIS_SUPERUSER_PASSWORD) are not.
        .merge(Env::prefixed("PORTCULLIS_").filter(|key| key.as_str().contains("__")).split("__"));
    if let Some(bind) = &overrides.bind {
        fig = fig.merge(("server.bind", bind.as_str()));
    }
    Ok(fig)
}

/// Loads and validates the settings; the error names the offending key.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, String> {
    let settings: Settings = figment(file, overrides)?
        .extract()
        .map_err(|err| err.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))?;
    settings.validate()?;
    Ok(settings)
}

impl Settings {
    /// The compiled-in defaults alone (tests start from these).
    pub fn defaults() -> Result<Self, String> {
        Figment::from(Toml::string(DEFAULT_TOML)).extract().map_err(|e| e.to_string())
    }

    /// Checks what types alone cannot: names, ranges and cross-key rules.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, why: String| Err(format!("invalid value for key \"{key}\": {why}"));
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return bad("server.bind", format!("{:?} is not an IP:port address", self.server.bind));
        }
        for proxy in &self.server.trusted_proxies {
            if crate::net::parse_network(proxy).is_none() {
                return bad("server.trusted_proxies", format!("{proxy:?} is not an IP address or CIDR range"));
            }
        }
        if self.server.max_body_bytes == 0 {
            return bad("server.max_body_bytes", "must be above 0".into());
        }
        if !self.metrics.bind.is_empty() && self.metrics.bind.parse::<SocketAddr>().is_err() {
            return bad("metrics.bind", format!("{:?} is not an IP:port address", self.metrics.bind));
        }
        if self.audit.queue_capacity == 0 {
            return bad("audit.queue_capacity", "must be above 0".into());
        }
        if self.database.max_connections == 0 || self.database.min_connections > self.database.max_connections {
            return bad("database.max_connections", "must be above 0 and at least database.min_connections".into());
        }
        self.validate_auth()?;
        self.validate_cookies()?;
        self.validate_jwt()?;
        self.validate_throttle()?;
        crate::password::Argon2Params::from_settings(&self.password).map(|_| ()).or_else(|e| bad("password", e))
    }

    fn validate_auth(&self) -> Result<(), String> {
        if self.auth.chain.is_empty() {
            return Err("invalid value for key \"auth.chain\": at least one authenticator is needed".into());
        }
        for (i, name) in self.auth.chain.iter().enumerate() {
            if !AUTHENTICATORS.contains(&name.as_str()) {
                return Err(format!(
                    "invalid value for key \"auth.chain\": unknown authenticator {name:?} (expected one of {})",
                    AUTHENTICATORS.join(", ")
                ));
            }
            if self.auth.chain[..i].contains(name) {
                return Err(format!("invalid value for key \"auth.chain\": {name:?} is listed twice"));
            }
        }
        if !PERMISSIONS.contains(&self.auth.default_permission.as_str()) {
            return Err(format!(
                "invalid value for key \"auth.default_permission\": {:?} (expected one of {})",
                self.auth.default_permission,
                PERMISSIONS.join(", ")
            ));
        }
        if self.token.keyword.is_empty() || self.token.keyword.contains(char::is_whitespace) {
            return Err("invalid value for key \"token.keyword\": one word is needed".into());
        }
        Ok(())
    }

    fn validate_cookies(&self) -> Result<(), String> {
        match self.session.cookie_samesite.as_str() {
            "Lax" | "Strict" => {}
            "None" if self.session.cookie_secure => {}
            "None" => {
                return Err("invalid value for key \"session.cookie_samesite\": \"None\" needs session.cookie_secure = true (browsers drop the cookie otherwise)".into());
            }
            other => {
                return Err(format!(
                    "invalid value for key \"session.cookie_samesite\": {other:?} (expected \"Lax\", \"Strict\" or \"None\")"
                ));
            }
        }
        for (key, name) in
            [("session.cookie_name", &self.session.cookie_name), ("csrf.cookie_name", &self.csrf.cookie_name)]
        {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
                return Err(format!("invalid value for key \"{key}\": {name:?} is not a valid cookie name"));
            }
        }
        if self.session.cookie_age == 0 {
            return Err("invalid value for key \"session.cookie_age\": must be above 0".into());
        }
        for origin in &self.csrf.trusted_origins {
            if url::Url::parse(origin).map(|u| u.origin().is_tuple()) != Ok(true) {
                return Err(format!(
                    "invalid value for key \"csrf.trusted_origins\": {origin:?} is not an origin like \"https://example.com\""
                ));
            }
        }
        Ok(())
    }

    fn validate_jwt(&self) -> Result<(), String> {
        let jwt = &self.jwt;
        if !ALGORITHMS.contains(&jwt.algorithm.as_str()) {
            return Err(format!(
                "invalid value for key \"jwt.algorithm\": {:?} (expected one of {})",
                jwt.algorithm,
                ALGORITHMS.join(", ")
            ));
        }
        if jwt.algorithm != "HS256" {
            for (key, file) in
                [("jwt.private_key_file", &jwt.private_key_file), ("jwt.public_key_file", &jwt.public_key_file)]
            {
                if file.is_empty() || !Path::new(file).is_file() {
                    return Err(format!(
                        "invalid value for key \"{key}\": {} needs a readable PEM file, got {file:?}",
                        jwt.algorithm
                    ));
                }
            }
        }
        if jwt.access_token_lifetime == 0 || jwt.refresh_token_lifetime == 0 {
            return Err("invalid value for key \"jwt.access_token_lifetime\": lifetimes must be above 0".into());
        }
        if jwt.auth_header_types.is_empty() || jwt.auth_header_types.iter().any(|t| t.is_empty() || t.contains(' ')) {
            return Err("invalid value for key \"jwt.auth_header_types\": one or more single words are needed".into());
        }
        Ok(())
    }

    fn validate_throttle(&self) -> Result<(), String> {
        let t = &self.throttle;
        if !["memory", "database", "redis"].contains(&t.backend.as_str()) {
            return Err(format!(
                "invalid value for key \"throttle.backend\": {:?} (expected \"memory\", \"database\" or \"redis\")",
                t.backend
            ));
        }
        if t.backend == "redis" && redis::Client::open(t.redis_url.expose()).is_err() {
            return Err("invalid value for key \"throttle.redis_url\": not a redis:// URL".into());
        }
        let mut parsed = Vec::new();
        for (key, value) in [("login", &t.login), ("login_ip", &t.login_ip), ("anon", &t.anon), ("user", &t.user)] {
            parsed.push(Rate::parse(value).map_err(|why| format!("invalid value for key \"throttle.{key}\": {why}"))?);
        }
        if let (Some(login), Some(login_ip)) = (&parsed[0], &parsed[1])
            && login_ip.per_second() <= login.per_second()
        {
            return Err(
                "invalid value for key \"throttle.login_ip\": must allow more attempts than throttle.login".into()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_defaults_are_complete_and_valid() {
        let settings = Settings::defaults().unwrap();
        settings.validate().unwrap();
        assert_eq!(settings.server.bind, "127.0.0.1:8000");
        assert_eq!(settings.auth.chain, ["session", "token", "jwt"]);
        assert_eq!(settings.database.url.expose(), "sqlite://portcullis.sqlite3?mode=rwc");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
