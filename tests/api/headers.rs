//! Response headers: Django's default middleware (security headers, `Vary: Cookie`),
//! `Cache-Control: no-store` on credentials, the cacheable compressed docs page, cookies.
use chrono::{DateTime, Utc};
use poem::http::StatusCode;
use serde_json::json;

use crate::helpers::{Browser, TestApp, set_cookie};

/// The value of `attribute` (`Max-Age`, `Expires`) in a `Set-Cookie` header.
fn cookie_attribute<'c>(cookie: &'c str, attribute: &str) -> Option<&'c str> {
    cookie.split(';').filter_map(|part| part.trim().split_once('=')).find(|(k, _)| *k == attribute).map(|(_, v)| v)
}

#[tokio::test]
async fn a_cookie_with_a_lifetime_has_max_age_and_expires() {
    let app = TestApp::new().await;
    let res = Browser::new(&app).get("/cookie/set/").await;
    assert_eq!(res.body, json!({"message": "Cookie set!"}));
    let cookie = set_cookie(&res, "token").unwrap();
    assert_eq!(cookie_attribute(cookie, "Max-Age"), Some("3600"), "{cookie}");
    let expires = cookie_attribute(cookie, "Expires").unwrap_or_else(|| panic!("no Expires: {cookie}"));
    let expires = DateTime::parse_from_rfc2822(expires).unwrap().with_timezone(&Utc);
    let left = (expires - Utc::now()).num_seconds();
    assert!((3590..=3600).contains(&left), "{cookie}");
    assert_eq!(res.status, StatusCode::OK);
}
