//! Django's `CsrfViewMiddleware`, as DRF's `SessionAuthentication.enforce_csrf` runs it:
//! the cookie holds a 32-character secret, clients send it (or Django's 64-character masked
//! form) in a header or a form field, and an `Origin` that is present must be ours or trusted.
use url::Url;

use super::Credentials;
use crate::crypto;

const CHARS: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const SECRET_LENGTH: usize = 32;
pub const TOKEN_LENGTH: usize = 64;
/// Django's CSRF_COOKIE_AGE: 52 weeks.
pub const COOKIE_AGE: u64 = 31_449_600;

/// A fresh 32-character secret for the cookie.
pub fn new_secret() -> String {
    crypto::random_string(SECRET_LENGTH, CHARS)
}

fn index(c: u8) -> Option<usize> {
    CHARS.iter().position(|&x| x == c)
}

/// Django's `_mask_cipher_secret`: a random mask followed by the secret shifted by it, so
/// the token in a page differs on every request (BREACH).
pub fn mask(secret: &str) -> String {
    let mask = crypto::random_string(SECRET_LENGTH, CHARS);
    let cipher: String = secret
        .bytes()
        .zip(mask.bytes())
        .map(|(s, m)| CHARS[(index(s).unwrap_or(0) + index(m).unwrap_or(0)) % CHARS.len()] as char)
        .collect();
    format!("{mask}{cipher}")
}

/// Django's `_unmask_cipher_token`.
fn unmask(token: &str) -> String {
    let (mask, cipher) = token.split_at(SECRET_LENGTH);
    cipher
        .bytes()
        .zip(mask.bytes())
        .map(|(c, m)| {
            let i = (index(c).unwrap_or(0) + CHARS.len() - index(m).unwrap_or(0)) % CHARS.len();
            CHARS[i] as char
        })
        .collect()
}

/// Django's `_check_token_format`: `Err(reason suffix)`.
fn check_format(token: &str) -> Result<(), &'static str> {
    if token.len() != SECRET_LENGTH && token.len() != TOKEN_LENGTH {
        return Err("has incorrect length");
    }
    if !token.bytes().all(|b| index(b).is_some()) {
        return Err("has invalid characters");
    }
    Ok(())
}

/// The secret a cookie or token carries (masked tokens are unmasked).
fn secret_of(token: &str) -> String {
    if token.len() == TOKEN_LENGTH { unmask(token) } else { token.to_owned() }
}

/// The cookie's secret if the cookie is well-formed (for reuse by `GET /csrf/`).
pub fn valid_cookie_secret(cookie: Option<&str>) -> Option<String> {
    cookie.filter(|c| check_format(c).is_ok()).map(secret_of)
}

/// What the check needs besides the request.
pub struct CsrfSettings<'a> {
    pub cookie_name: &'a str,
    pub header_name: &'a str,
    pub trusted_origins: &'a [String],
}

/// Django's `HttpHeaders.parse_header_name` display form: "X-CSRFToken" -> "X-Csrftoken".
fn header_display(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Why a request failed the CSRF check: Django's reason, reported as `CSRF Failed: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CsrfFailure(pub String);

/// Django's `CsrfViewMiddleware` checks, for a request the session authenticated.
pub fn check(creds: &Credentials, settings: &CsrfSettings<'_>) -> Result<(), CsrfFailure> {
    reason(creds, settings).map_err(CsrfFailure)
}

fn reason(creds: &Credentials, settings: &CsrfSettings<'_>) -> Result<(), String> {
    if creds.is_safe_method() {
        return Ok(());
    }
    if let Some(origin) = &creds.origin {
        if !origin_verified(creds, origin, settings.trusted_origins) {
            return Err(format!("Origin checking failed - {origin} does not match any trusted origins."));
        }
    } else if creds.secure {
        check_referer(creds, settings.trusted_origins)?;
    }
    let cookie = creds.cookies.get(settings.cookie_name).ok_or("CSRF cookie not set.")?;
    match check_format(cookie) {
        Err("has incorrect length") => return Err("CSRF cookie has incorrect length.".into()),
        Err(_) => return Err("CSRF cookie has invalid characters.".into()),
        Ok(()) => {}
    }
    let (token, source) = match (&creds.csrf_form, &creds.csrf_header) {
        (Some(form), _) if !form.is_empty() => (form, "POST".to_owned()),
        (_, Some(header)) => (header, format!("the '{}' HTTP header", header_display(settings.header_name))),
        _ => return Err("CSRF token missing.".into()),
    };
    check_format(token).map_err(|why| format!("CSRF token from {source} {why}."))?;
    if !crypto::constant_time_eq(secret_of(token).as_bytes(), secret_of(cookie).as_bytes()) {
        return Err(format!("CSRF token from {source} incorrect."));
    }
    Ok(())
}

/// Django's `_origin_verified`: our own origin, an exact trusted origin, or a trusted
/// `scheme://*.domain` wildcard, matched as Django does (same scheme, `is_same_domain` on
/// the netloc, port included: `https://*.example.com` covers `https://a.example.com` and
/// `https://example.com`, not `https://a.example.com:8443` nor `https://evilexample.com`).
pub fn origin_verified(creds: &Credentials, origin: &str, trusted: &[String]) -> bool {
    let scheme = if creds.secure { "https" } else { "http" };
    if let Some(host) = &creds.host
        && origin == format!("{scheme}://{host}")
    {
        return true;
    }
    if trusted.iter().any(|t| !t.contains('*') && t == origin) {
        return true;
    }
    let Some((scheme, netloc)) = split(origin) else { return false };
    trusted.iter().filter(|t| t.contains('*')).filter_map(|t| split(t)).any(|(t_scheme, t_netloc)| {
        t_scheme.eq_ignore_ascii_case(scheme) && is_same_domain(netloc, t_netloc.trim_start_matches('*'))
    })
}

/// Python's `urlsplit(url)[:2]`: the scheme and the netloc (host and port as written).
fn split(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((scheme, rest.split(['/', '?', '#']).next().unwrap_or_default()))
}

/// Django's `is_same_domain`: a pattern starting with "." matches the domain and every
/// subdomain; any other pattern matches exactly.
fn is_same_domain(host: &str, pattern: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix('.') {
        _ if pattern.is_empty() => false,
        Some(domain) => host.ends_with(&pattern) || host == domain,
        None => host == pattern,
    }
}

/// Django's strict Referer check for HTTPS requests without an Origin.
fn check_referer(creds: &Credentials, trusted: &[String]) -> Result<(), String> {
    let referer = creds.referer.as_deref().ok_or("Referer checking failed - no Referer.")?;
    let parsed = Url::parse(referer).map_err(|_| "Referer checking failed - Referer is malformed.".to_owned())?;
    if parsed.scheme() != "https" {
        return Err("Referer checking failed - Referer is insecure while host is secure.".into());
    }
    let referer_host = match split(referer) {
        Some((_, netloc)) if parsed.host_str().is_some() => netloc,
        _ => return Err("Referer checking failed - Referer is malformed.".into()),
    };
    let ours = creds.host.as_deref().is_some_and(|host| is_same_domain(referer_host, host));
    let trusted_host = trusted
        .iter()
        .filter_map(|t| split(t))
        .any(|(_, netloc)| is_same_domain(referer_host, netloc.trim_start_matches('*')));
    if ours || trusted_host {
        Ok(())
    } else {
        Err(format!("Referer checking failed - {referer} does not match any trusted origins."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_origins_match_as_djangos() {
        let creds = Credentials { host: Some("api.example.com".into()), ..Credentials::default() };
        let trusted = ["https://*.corp.test".to_owned(), "https://*example.com".into(), "http://app.test:8080".into()];
        let ok = |origin| origin_verified(&creds, origin, &trusted);
        assert!(ok("http://api.example.com"), "our own origin");
        assert!(ok("https://x.corp.test") && ok("https://a.b.corp.test") && ok("https://corp.test"));
        assert!(!ok("https://x.corp.test:8443"), "the port is part of the netloc");
        assert!(!ok("http://x.corp.test"), "the scheme must match");
        assert!(!ok("https://evilcorp.test"));
        assert!(ok("https://example.com") && !ok("https://evilexample.com") && !ok("https://a.example.com"));
        assert!(ok("http://app.test:8080") && !ok("http://app.test"));
    }

    #[test]
    fn masking_round_trips_and_differs_each_time() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32);
        let (a, b) = (mask(&secret), mask(&secret));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(unmask(&a), secret);
        assert_eq!(unmask(&b), secret);
    }

    #[test]
    fn unmasks_a_token_made_by_django() {
        // Django 5.2: _mask_cipher_secret("abcdefghijklmnopqrstuvwxyzABCDEF") with mask "0"*32.
        let token = format!("{}{}", "0".repeat(32), "0123456789abcdefghijklmnopqrstuv");
        assert_eq!(unmask(&token), "abcdefghijklmnopqrstuvwxyzABCDEF");
    }

    fn https_post(referer: Option<&str>) -> Credentials {
        let secret = "a".repeat(32);
        Credentials {
            method: "POST".into(),
            secure: true,
            host: Some("api.example.com".into()),
            referer: referer.map(str::to_owned),
            csrf_header: Some(secret.clone()),
            cookies: [("csrftoken".to_owned(), secret)].into(),
            ..Credentials::default()
        }
    }

    #[test]
    fn https_requests_without_origin_get_djangos_referer_check() {
        let trusted = vec!["https://app.example.com".to_owned()];
        let settings = CsrfSettings { cookie_name: "csrftoken", header_name: "X-CSRFToken", trusted_origins: &trusted };
        let check = |referer| reason(&https_post(referer), &settings);
        assert_eq!(check(None), Err("Referer checking failed - no Referer.".into()));
        assert_eq!(check(Some("not a url")), Err("Referer checking failed - Referer is malformed.".into()));
        assert_eq!(
            check(Some("http://api.example.com/x")),
            Err("Referer checking failed - Referer is insecure while host is secure.".into())
        );
        assert_eq!(
            check(Some("https://evil.example/x")),
            Err("Referer checking failed - https://evil.example/x does not match any trusted origins.".into())
        );
        assert_eq!(check(Some("https://api.example.com/page")), Ok(()));
        assert_eq!(check(Some("https://app.example.com/")), Ok(()));
    }

    #[test]
    fn header_names_display_as_django_does() {
        assert_eq!(header_display("X-CSRFToken"), "X-Csrftoken");
        assert_eq!(header_display("X-XSRF-TOKEN"), "X-Xsrf-Token");
    }
}
