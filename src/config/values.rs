//! The typed values settings are made of: each parsed once, by serde, when the settings
//! are loaded, so a bad value stops start-up with a message naming its key and nothing
//! downstream parses strings again.
use std::{fmt, net::IpAddr, time::Duration};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, de::Error as _};

/// One entry of `auth.chain` (DRF's `DEFAULT_AUTHENTICATION_CLASSES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    Session,
    Token,
    Jwt,
    Basic,
}

impl AuthScheme {
    pub const ALL: [Self; 4] = [Self::Session, Self::Token, Self::Jwt, Self::Basic];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Token => "token",
            Self::Jwt => "jwt",
            Self::Basic => "basic",
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `auth.default_permission` (DRF's `DEFAULT_PERMISSION_CLASSES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultPermission {
    AllowAny,
    IsAuthenticated,
    IsAdminUser,
    IsAuthenticatedOrReadOnly,
}

/// `session.cookie_samesite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// `throttle.backend`: where failed password checks are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleBackend {
    Memory,
    Database,
    Redis,
}

/// `email.backend`: where mails go (Django's `EMAIL_BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailBackend {
    /// Printed on stdout (Django's console backend): the default needs no mail server.
    Console,
    /// Sent to `email.smtp_url`.
    Smtp,
    /// Kept in memory for the process to read (Django's locmem backend, for tests).
    Memory,
}

/// `account.email_verification` (django-allauth's `ACCOUNT_EMAIL_VERIFICATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailVerification {
    None,
    Optional,
    Mandatory,
}

/// `jwt.algorithm`, pinned: tokens naming another are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
    EdDSA,
}

/// What a `[[gateway.rules]]` entry requires of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayPolicy {
    AllowAny,
    IsAuthenticated,
    IsAdminUser,
    IsAuthenticatedOrReadOnly,
    /// `perm:app_label.codename`.
    Perm(String),
    /// `group:NAME`.
    Group(String),
}

impl<'de> Deserialize<'de> for GatewayPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let valid_perm =
            |p: &str| matches!(p.split_once('.'), Some((a, c)) if !a.is_empty() && !c.is_empty() && !c.contains('.'));
        Ok(match s.as_str() {
            "allow_any" => Self::AllowAny,
            "is_authenticated" => Self::IsAuthenticated,
            "is_admin_user" => Self::IsAdminUser,
            "is_authenticated_or_read_only" => Self::IsAuthenticatedOrReadOnly,
            _ => match s.split_once(':') {
                Some(("perm", perm)) if valid_perm(perm) => Self::Perm(perm.to_owned()),
                Some(("group", group)) if !group.is_empty() && group.chars().count() <= 150 => {
                    Self::Group(group.to_owned())
                }
                _ => {
                    return Err(D::Error::custom(format!(
                        "{s:?} is not a policy (allow_any, is_authenticated, is_admin_user, \
                         is_authenticated_or_read_only, \"perm:app_label.codename\" or \"group:NAME\")"
                    )));
                }
            },
        })
    }
}

/// A throttle rate in DRF's "N/period" format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub period: Duration,
}

impl Rate {
    /// DRF's parser: only the first letter of the period counts (`s`, `m`, `h`, `d`), so
    /// "5/min" and "5/minute" agree. Empty means "no limit".
    pub fn parse(s: &str) -> Result<Option<Rate>, String> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        let (num, period) = s.split_once('/').ok_or_else(|| format!("{s:?} is not of the form N/period"))?;
        let requests: u32 = num.trim().parse().map_err(|_| format!("{num:?} is not a whole number of requests"))?;
        let secs = match period.trim().chars().next() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86400,
            _ => return Err(format!("unknown period {period:?} (use s, sec, m, min, h, hour, d or day)")),
        };
        if requests == 0 {
            return Err(format!("{s:?} allows no request at all"));
        }
        Ok(Some(Rate { requests, period: Duration::from_secs(secs) }))
    }

    pub fn per_second(&self) -> f64 {
        f64::from(self.requests) / self.period.as_secs_f64()
    }

    /// The same period, `factor` times the requests.
    pub fn times(self, factor: u32) -> Self {
        Self { requests: self.requests.saturating_mul(factor), ..self }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "sec",
            60 => "min",
            3600 => "hour",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.requests)
    }
}

/// `""` (no limit) or a rate.
pub fn optional_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    Rate::parse(&String::deserialize(d)?).map_err(D::Error::custom)
}

/// `throttle.login_ip`: `"auto"` (four times `throttle.login`), `""` (off) or a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedRate {
    Auto,
    Set(Option<Rate>),
}

impl<'de> Deserialize<'de> for DerivedRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim() == "auto" {
            return Ok(Self::Auto);
        }
        Rate::parse(&s).map(Self::Set).map_err(D::Error::custom)
    }
}

/// An IP address or CIDR range (`server.trusted_proxies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub IpNet);

impl Network {
    pub fn parse(s: &str) -> Option<Self> {
        s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from)).map(Self)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| D::Error::custom(format!("{s:?} is not an IP address or CIDR range")))
    }
}

/// `""` (none) or an `IP:port` address.
pub fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| D::Error::custom(format!("{s:?} is not an IP:port address")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_drf_rates() {
        assert_eq!(Rate::parse("5/min").unwrap(), Some(Rate { requests: 5, period: Duration::from_secs(60) }));
        assert_eq!(Rate::parse("100/day").unwrap().unwrap().period, Duration::from_secs(86400));
        assert_eq!(Rate::parse("").unwrap(), None);
        assert!(Rate::parse("5").is_err());
        assert!(Rate::parse("x/min").is_err());
        assert!(Rate::parse("5/week").is_err());
        assert!(Rate::parse("0/s").is_err());
        assert_eq!(Rate::parse("1000/m").unwrap().unwrap().times(4).to_string(), "4000/min");
    }

    #[test]
    fn networks_are_addresses_or_ranges() {
        assert!(Network::parse("10.0.0.0/8").is_some());
        assert!(Network::parse("::1").is_some());
        assert!(Network::parse("10.0.0.0/33").is_none());
        assert!(Network::parse("proxy").is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "[redacted]");
    }
}
