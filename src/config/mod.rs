//! Settings: defaults compiled in from `config/default.toml`, then the `--config` file,
//! `DATABASE_URL`, `PORTCULLIS_<SECTION>__<KEY>` variables, and command-line flags.
//!
//! Every section denies unknown fields and every key is required in the merged result, so a
//! typo or a wrong type stops start-up with a message naming the key instead of being ignored.
//! Values are typed ([`values`]) and parsed here once; this module depends on nothing else
//! of portcullis.
mod email;
mod gateway;
mod jwt;
mod mfa;
pub mod values;

pub use jwt::Jwt;

use std::{net::SocketAddr, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use serde::Deserialize;

pub use email::{Account, Email};
pub use gateway::{Gateway, GatewayRule};
pub use mfa::Mfa;
pub use values::{
    AuthScheme, DefaultPermission, DerivedRate, EmailBackend, EmailVerification, GatewayPolicy, JwtAlgorithm, Network,
    Rate, SameSite, Secret, ThrottleBackend,
};

/// The documented defaults, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

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
    pub email: Email,
    pub account: Account,
    pub log: Log,
    pub gateway: Gateway,
    pub mfa: Mfa,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub enabled: bool,
    #[serde(deserialize_with = "values::optional_addr")]
    pub bind: Option<SocketAddr>,
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
    pub bind: SocketAddr,
    pub trusted_proxies: Vec<Network>,
    pub max_body_bytes: usize,
    pub shutdown_timeout: u64,
    pub max_connections: usize,
    pub header_timeout: u64,
    pub keep_alive_timeout: u64,
    pub body_timeout: u64,
    pub accept_backoff_ms: u64,
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
    pub chain: Vec<AuthScheme>,
    pub default_permission: DefaultPermission,
    pub session_challenge: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub cookie_name: String,
    pub cookie_age: u64,
    pub cookie_secure: bool,
    pub cookie_samesite: SameSite,
    pub expire_at_browser_close: bool,
    pub save_every_request: bool,
    pub max_data_bytes: usize,
    pub max_per_user: u64,
    /// Django's `SESSION_COOKIE_DOMAIN`: empty for the host alone, e.g. "example.com" for
    /// every sibling host (one login behind the gateway for app.example.com and api.example.com).
    pub cookie_domain: String,
}

impl Session {
    /// `cookie_age` as a duration.
    pub fn age(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.cookie_age).unwrap_or(i64::MAX / 1000))
    }
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
    pub max_per_user: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    pub ttl: u64,
    pub max_entries: u64,
    pub notify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub backend: ThrottleBackend,
    pub redis_url: Secret,
    #[serde(deserialize_with = "values::optional_rate")]
    pub login: Option<Rate>,
    pub login_ip: DerivedRate,
    #[serde(deserialize_with = "values::optional_rate")]
    pub anon: Option<Rate>,
    #[serde(deserialize_with = "values::optional_rate")]
    pub user: Option<Rate>,
    pub device_cookie_name: String,
    pub device_cookie_age: u64,
}

impl Throttle {
    /// `login_ip` as it applies: `"auto"` is four times `login` (20/min beside the default 5/min).
    pub fn login_ip_rate(&self) -> Option<Rate> {
        match self.login_ip {
            DerivedRate::Auto => self.login.map(|r| r.times(4)),
            DerivedRate::Set(rate) => rate,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub level: String,
}

/// Overrides given on the command line, applied last.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<String>,
}

/// Why the settings could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

fn invalid(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid value for key \"{key}\": {why}"))
}

/// Builds the layered configuration (see the module docs).
pub fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError(format!("config file {} does not exist", path.display())));
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

/// Loads and validates the settings.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
    let settings: Settings = figment(file, overrides)?
        .extract()
        .map_err(|err| ConfigError(err.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    settings.validate()?;
    Ok(settings)
}

impl Settings {
    /// The compiled-in defaults alone (tests start from these).
    pub fn defaults() -> Result<Self, ConfigError> {
        Figment::from(Toml::string(DEFAULT_TOML)).extract().map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks what types alone cannot: ranges and rules between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        if self.audit.queue_capacity == 0 {
            return Err(invalid("audit.queue_capacity", "must be above 0"));
        }
        if self.database.max_connections == 0 || self.database.min_connections > self.database.max_connections {
            return Err(invalid("database.max_connections", "must be above 0 and at least database.min_connections"));
        }
        let p = &self.password;
        argon2::Params::new(p.argon2_memory_kib, p.argon2_iterations, p.argon2_parallelism, None).map_err(|e| {
            invalid(
                "password",
                format!(
                    "argon2 parameters m={} t={} p={}: {e}",
                    p.argon2_memory_kib, p.argon2_iterations, p.argon2_parallelism
                ),
            )
        })?;
        self.validate_auth()?;
        self.validate_cookies()?;
        self.jwt.validate()?;
        self.email.validate()?;
        self.account.validate()?;
        self.gateway.validate()?;
        self.mfa.validate()?;
        self.validate_throttle()
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let above_zero = [
            ("server.max_body_bytes", s.max_body_bytes as u64),
            ("server.max_connections", s.max_connections as u64),
            ("server.header_timeout", s.header_timeout),
            ("server.keep_alive_timeout", s.keep_alive_timeout),
            ("server.body_timeout", s.body_timeout),
            ("server.accept_backoff_ms", s.accept_backoff_ms),
        ];
        match above_zero.into_iter().find(|(_, value)| *value == 0) {
            Some((key, _)) => Err(invalid(key, "must be above 0")),
            None => Ok(()),
        }
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let chain = &self.auth.chain;
        if chain.is_empty() {
            return Err(invalid("auth.chain", "at least one authenticator is needed"));
        }
        if let Some((i, twice)) = chain.iter().enumerate().find(|(i, s)| chain[..*i].contains(s)) {
            return Err(invalid("auth.chain", format!("\"{twice}\" is listed twice (position {})", i + 1)));
        }
        if self.token.keyword.is_empty() || self.token.keyword.contains(char::is_whitespace) {
            return Err(invalid("token.keyword", "one word is needed"));
        }
        Ok(())
    }

    fn validate_cookies(&self) -> Result<(), ConfigError> {
        if self.session.cookie_samesite == SameSite::None && !self.session.cookie_secure {
            return Err(invalid(
                "session.cookie_samesite",
                "\"None\" needs session.cookie_secure = true (browsers drop the cookie otherwise)",
            ));
        }
        for (key, name) in [
            ("session.cookie_name", &self.session.cookie_name),
            ("csrf.cookie_name", &self.csrf.cookie_name),
            ("throttle.device_cookie_name", &self.throttle.device_cookie_name),
        ] {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
                return Err(invalid(key, format!("{name:?} is not a valid cookie name")));
            }
        }
        if self.session.cookie_age == 0 {
            return Err(invalid("session.cookie_age", "must be above 0"));
        }
        for (key, value) in [
            ("session.max_data_bytes", self.session.max_data_bytes as u64),
            ("session.max_per_user", self.session.max_per_user),
            ("token.max_per_user", self.token.max_per_user),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be above 0"));
            }
        }
        for origin in &self.csrf.trusted_origins {
            if url::Url::parse(origin).map(|u| u.origin().is_tuple()) != Ok(true) {
                return Err(invalid(
                    "csrf.trusted_origins",
                    format!("{origin:?} is not an origin like \"https://example.com\""),
                ));
            }
        }
        Ok(())
    }

    fn validate_throttle(&self) -> Result<(), ConfigError> {
        let t = &self.throttle;
        if t.backend == ThrottleBackend::Redis && redis::Client::open(t.redis_url.expose()).is_err() {
            return Err(invalid("throttle.redis_url", "not a redis:// URL"));
        }
        if let (Some(login), DerivedRate::Set(Some(login_ip))) = (t.login, t.login_ip)
            && login_ip.per_second() <= login.per_second()
        {
            return Err(invalid(
                "throttle.login_ip",
                format!(
                    "\"{login_ip}\" allows no more failures than throttle.login (\"{login}\"); set it higher, \
                     e.g. \"{}\", or to \"auto\" (four times throttle.login)",
                    login.times(4)
                ),
            ));
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
        assert_eq!(settings.server.bind.to_string(), "127.0.0.1:8000");
        let server = &settings.server;
        let limits = (server.max_connections, server.header_timeout, server.keep_alive_timeout, server.body_timeout);
        assert_eq!(limits, (512, 10, 75, 30));
        assert_eq!(settings.auth.chain, [AuthScheme::Session, AuthScheme::Token, AuthScheme::Jwt]);
        assert_eq!(settings.database.url.expose(), "sqlite://portcullis.sqlite3?mode=rwc");
        assert_eq!(settings.throttle.login_ip_rate().map(|r| r.to_string()).as_deref(), Some("20/min"));
    }

    #[test]
    fn server_limits_of_zero_are_refused_by_name() {
        let mut settings = Settings::defaults().unwrap();
        settings.server.header_timeout = 0;
        assert!(settings.validate().unwrap_err().to_string().contains("server.header_timeout"));
        settings.server.header_timeout = 10;
        settings.server.max_connections = 0;
        assert!(settings.validate().unwrap_err().to_string().contains("server.max_connections"));
    }
}
