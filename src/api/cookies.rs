//! The cookies portcullis sets, with Django's attributes.
use chrono::{Duration, TimeZone, Utc};
use poem::web::cookie::{Cookie, SameSite};

use crate::{authn::csrf, config, config::Settings};

fn same_site(value: &config::SameSite) -> SameSite {
    match value {
        config::SameSite::Strict => SameSite::Strict,
        config::SameSite::None => SameSite::None,
        config::SameSite::Lax => SameSite::Lax,
    }
}

fn seconds(secs: u64) -> std::time::Duration {
    std::time::Duration::from_secs(secs)
}

/// Django's `set_cookie(max_age=...)`: `Max-Age` and an `Expires` that says the same, for
/// the clients that only know the older attribute.
fn set_lifetime(cookie: &mut Cookie, secs: u64) {
    cookie.set_max_age(seconds(secs));
    cookie.set_expires(Utc::now() + Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000)));
}

/// A cookie as Django's `response.set_cookie(name, value, max_age=secs)` makes it: Path=/,
/// no other attribute.
pub fn lasting(name: &str, value: &str, secs: u64) -> Cookie {
    let mut cookie = Cookie::new_with_str(name, value);
    cookie.set_path("/");
    set_lifetime(&mut cookie, secs);
    cookie
}

/// `sessionid`: HttpOnly, SameSite and Secure from config, Path=/, and Max-Age/Expires
/// unless `expire_at_browser_close` (then a browser-session cookie).
pub fn session(key: &str, settings: &Settings) -> Cookie {
    let s = &settings.session;
    let mut cookie = Cookie::new_with_str(&s.cookie_name, key);
    cookie.set_http_only(true);
    cookie.set_path("/");
    if !s.cookie_domain.is_empty() {
        cookie.set_domain(&s.cookie_domain);
    }
    cookie.set_same_site(same_site(&s.cookie_samesite));
    cookie.set_secure(s.cookie_secure);
    if !s.expire_at_browser_close {
        set_lifetime(&mut cookie, s.cookie_age);
    }
    cookie
}

/// `csrftoken`: readable by JavaScript (it must copy it into the header), a year long.
pub fn csrf(secret: &str, settings: &Settings) -> Cookie {
    let mut cookie = Cookie::new_with_str(&settings.csrf.cookie_name, secret);
    cookie.set_http_only(false);
    cookie.set_path("/");
    cookie.set_same_site(SameSite::Lax);
    cookie.set_secure(settings.csrf.cookie_secure);
    set_lifetime(&mut cookie, csrf::COOKIE_AGE);
    cookie
}

/// The device cookie (`service::devices`): HttpOnly, SameSite=Lax, Secure like the session
/// cookie, `throttle.device_cookie_age` long.
pub fn device(value: &str, settings: &Settings) -> Cookie {
    let mut cookie = Cookie::new_with_str(&settings.throttle.device_cookie_name, value);
    cookie.set_http_only(true);
    cookie.set_path("/");
    cookie.set_same_site(SameSite::Lax);
    cookie.set_secure(settings.session.cookie_secure);
    set_lifetime(&mut cookie, settings.throttle.device_cookie_age);
    cookie
}

/// Django's `delete_cookie`: empty value, Max-Age=0, expired in 1970, Path=/.
pub fn removal(name: &str, settings: &Settings) -> Cookie {
    let mut cookie = Cookie::new_with_str(name, "");
    cookie.set_path("/");
    // A cookie set for a domain is only removed by one for the same domain.
    if name == settings.session.cookie_name && !settings.session.cookie_domain.is_empty() {
        cookie.set_domain(&settings.session.cookie_domain);
    }
    cookie.set_max_age(seconds(0));
    if let Some(epoch) = Utc.timestamp_opt(0, 0).single() {
        cookie.set_expires(epoch);
    }
    cookie.set_same_site(same_site(&settings.session.cookie_samesite));
    cookie
}
