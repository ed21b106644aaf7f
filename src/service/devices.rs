//! OWASP's device cookies ("Slow Down Online Guessing Attacks with Device Cookies"): a
//! client that logged in as a user gets a signed cookie naming that user. Its later logins
//! as that user spend a failure budget of its own instead of the username's, so whoever
//! exhausts a username's budget (a lockout anyone could cause) locks out only the clients
//! that never logged in as that user — not the user on their own devices. A guesser who
//! holds no such cookie still gets the username's few attempts a minute.
//!
//! The cookie is `nonce.mac`: 16 random bytes and an HMAC-SHA256 of the username (its
//! case-insensitive key) and the nonce under a server secret kept in the database (shared
//! by every instance). Nothing is stored per device; the nonce names its budget.
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{crypto, store::user};

/// The keyed MAC, ready to be cloned for each cookie.
pub struct Devices {
    mac: Hmac<Sha256>,
}

impl Devices {
    pub const SECRET_NAME: &'static str = "device_cookie_key";

    /// `None` cannot happen: HMAC takes keys of any length.
    pub fn new(key: &str) -> Option<Self> {
        Some(Self { mac: Hmac::<Sha256>::new_from_slice(key.as_bytes()).ok()? })
    }

    fn mac(&self, username: &str, nonce: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(format!("portcullis.device:{}:{nonce}", user::username_key(username)).as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A new cookie value for a client that just logged in as `username`.
    pub fn issue(&self, username: &str) -> String {
        let nonce = crypto::random_hex(16);
        format!("{nonce}.{}", self.mac(username, &nonce))
    }

    /// The device's id when `cookie` was issued here for `username`.
    pub fn verify<'c>(&self, cookie: &'c str, username: &str) -> Option<&'c str> {
        let (nonce, mac) = cookie.split_once('.')?;
        let plausible = nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit());
        (plausible && crypto::constant_time_eq(mac.as_bytes(), self.mac(username, nonce).as_bytes())).then_some(nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_name_their_user_and_cannot_be_forged() {
        let devices = Devices::new("k1").unwrap();
        let cookie = devices.issue("Carol");
        let nonce = devices.verify(&cookie, "carol").expect("the key is case-insensitive, as logins are");
        assert_eq!(nonce.len(), 32);
        assert_eq!(devices.verify(&cookie, "mallory"), None, "another user's cookie is no device of theirs");
        assert_eq!(Devices::new("k2").unwrap().verify(&cookie, "carol"), None, "another server's key");
        let (nonce, _) = cookie.split_once('.').unwrap();
        assert_eq!(devices.verify(&format!("{nonce}.{}", "0".repeat(32)), "carol"), None);
        assert_eq!(devices.verify("garbage", "carol"), None);
    }
}
