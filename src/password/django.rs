//! Django's password hash formats (`django.contrib.auth.hashers`, Django 5.2), verify-only.
//!
//! Users migrated from a Django database keep their stored hashes; each one verifies here as
//! Django would and is replaced by our argon2id at the next successful login (`must_update`
//! is always true). Where Django re-encodes the password and compares whole strings (PBKDF2,
//! bcrypt, scrypt), so do we: any non-canonical field ("01000" iterations, a stray `$`,
//! unpadded base64) then fails exactly as it does in Django, with no parsing leniency to
//! reason about. Parameters are read from the stored string, so they are capped: a hostile or
//! corrupt row must not make one login burn minutes of CPU or gigabytes of memory.

use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use sha2::Digest;
use subtle::ConstantTimeEq as _;

use super::Hasher;

/// Django 5.2 defaults to 1,000,000; ten times that is already ~10 s per login.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Django defaults to cost 12; each step doubles the time, 16 is ~16x the default.
const MAX_BCRYPT_COST: u32 = 16;
/// Django defaults to n = 2^14.
const MAX_SCRYPT_N: u64 = 1 << 20;
/// Django's `maxmem = 0` means OpenSSL's 32 MiB ceiling; Django documents raising `maxmem` in
/// a subclass for larger work factors, so we accept up to 256 MiB.
const MAX_SCRYPT_MEMORY: u128 = 256 << 20;
/// scrypt time grows with n*r*p; Django's default is 2^14*8*5 (about 2^19.3).
const MAX_SCRYPT_WORK: u128 = 1 << 24;
/// argon2 memory in KiB (1 GiB); Django's default is 102,400 (100 MiB).
const MAX_ARGON2_MEMORY_KIB: u32 = 1 << 20;
/// argon2 passes; Django's default is 2.
const MAX_ARGON2_TIME: u32 = 100;

/// Django's hashers, in PASSWORD_HASHERS order after our own argon2id: all verify, none hashes.
pub fn hashers() -> Vec<Box<dyn Hasher>> {
    vec![
        Box::new(Pbkdf2Sha256),
        Box::new(Pbkdf2Sha1),
        Box::new(DjangoArgon2),
        Box::new(BcryptSha256),
        Box::new(Bcrypt),
        Box::new(Scrypt),
    ]
}

/// Django's `identify_hasher`: the algorithm is everything before the first `$`.
fn algorithm_is(encoded: &str, algorithm: &str) -> bool {
    encoded.split_once('$').is_some_and(|(name, _)| name == algorithm)
}

/// An integer field as Django writes it (`%d` of a positive int). Python's `int()` accepts
/// more ("+5", " 5", "0_5"), but the re-encoded string would then differ, so those fail in
/// Django too. Zero is refused because Django replaces it by its default (`n or default`),
/// which again cannot re-encode to the stored string.
fn canonical<T: std::str::FromStr + ToString + Default + PartialEq>(field: &str) -> Option<T> {
    field.parse::<T>().ok().filter(|n| *n != T::default() && n.to_string() == field)
}

/// Length is not secret; the contents are compared in constant time.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `pbkdf2_<digest>$<iterations>$<salt>$<base64 of a digest-sized key>`.
///
/// `derive` is PBKDF2-HMAC with the format's digest, filling a key of the digest's size
/// (hashlib.pbkdf2_hmac's `dklen=None`).
fn pbkdf2_verify(algorithm: &str, password: &[u8], encoded: &str, derive: fn(&[u8], &[u8], u32) -> Vec<u8>) -> bool {
    let mut fields = encoded.splitn(4, '$');
    let (Some(name), Some(iterations), Some(salt), Some(_)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let Some(rounds) = canonical::<u32>(iterations) else { return false };
    // Django's _check_encode_args raises on an empty salt.
    if name != algorithm || salt.is_empty() || rounds > MAX_PBKDF2_ITERATIONS {
        return false;
    }
    let key = derive(password, salt.as_bytes(), rounds);
    let expected = format!("{algorithm}${rounds}${salt}${}", STANDARD.encode(&key));
    same(expected.as_bytes(), encoded.as_bytes())
}

/// `PBKDF2PasswordHasher`: PBKDF2-HMAC-SHA256.
pub struct Pbkdf2Sha256;

impl Hasher for Pbkdf2Sha256 {
    fn identifies(&self, encoded: &str) -> bool {
        algorithm_is(encoded, "pbkdf2_sha256")
    }
    fn verify(&self, password: &[u8], encoded: &str) -> bool {
        pbkdf2_verify("pbkdf2_sha256", password, encoded, |pw, salt, rounds| {
            pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(pw, salt, rounds).to_vec()
        })
    }
    fn must_update(&self, _: &str) -> bool {
        true
    }
}

/// `PBKDF2SHA1PasswordHasher`: PBKDF2-HMAC-SHA1.
pub struct Pbkdf2Sha1;

impl Hasher for Pbkdf2Sha1 {
    fn identifies(&self, encoded: &str) -> bool {
        algorithm_is(encoded, "pbkdf2_sha1")
    }
    fn verify(&self, password: &[u8], encoded: &str) -> bool {
        pbkdf2_verify("pbkdf2_sha1", password, encoded, |pw, salt, rounds| {
            pbkdf2::pbkdf2_hmac_array::<sha1::Sha1, 20>(pw, salt, rounds).to_vec()
        })
    }
    fn must_update(&self, _: &str) -> bool {
        true
    }
}

/// `Argon2PasswordHasher`: "argon2" followed by argon2-cffi's PHC string. Django verifies with
/// `argon2.PasswordHasher().verify`, which takes the variant (i, d or id), version and costs
/// from the string itself, so old argon2i hashes from Django 1.10 still verify.
pub struct DjangoArgon2;

impl Hasher for DjangoArgon2 {
    fn identifies(&self, encoded: &str) -> bool {
        algorithm_is(encoded, "argon2")
    }

    fn verify(&self, password: &[u8], encoded: &str) -> bool {
        let Some(phc) = encoded.strip_prefix("argon2") else { return false };
        let Ok(hash) = PasswordHash::new(phc) else { return false };
        let (Ok(algorithm), Some(salt), Some(expected)) =
            (hash.algorithm.as_str().parse::<Algorithm>(), hash.salt.as_ref(), hash.hash.as_ref())
        else {
            return false;
        };
        // The reference C library (and so argon2-cffi) reads a missing `v=` as version 0x10,
        // as in argon2-cffi's hashes before 16.0; the Rust crate would default to 0x13.
        let version = match hash.version {
            None => Version::V0x10,
            Some(v) => match Version::try_from(v) {
                Ok(version) => version,
                Err(_) => return false,
            },
        };
        let Ok(params) = Params::try_from(&hash) else { return false };
        // The C decoder knows only m, t and p; a keyid or data field makes it refuse the hash.
        if params.m_cost() > MAX_ARGON2_MEMORY_KIB
            || params.t_cost() > MAX_ARGON2_TIME
            || !params.keyid().is_empty()
            || !params.data().is_empty()
        {
            return false;
        }
        let mut actual = vec![0u8; expected.len()];
        // A temporary working area, not one of the pool's (see `argon2id`): Django's default
        // of 100 MiB would not fit in one, glibc maps and unmaps blocks that large, and the
        // hash is replaced by our argon2id at this login.
        Argon2::new(algorithm, version, params).hash_password_into(password, salt, &mut actual).is_ok()
            && same(&actual, expected.as_bytes())
    }

    fn must_update(&self, _: &str) -> bool {
        true
    }
}

/// bcrypt's own base64 (`./A-Za-z0-9`, unpadded). Strict about the unused low bits of the
/// last salt character: pyca/bcrypt either refuses such a salt or re-encodes it canonically,
/// and either way Django's whole-string comparison fails.
const BCRYPT_B64: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::BCRYPT, base64::engine::general_purpose::NO_PAD);

/// Django's bcrypt `verify`: `bcrypt.hashpw(password, data)` must reproduce `data` exactly,
/// where `data` is `$2b$<2-digit cost>$<22-char salt><31-char checksum>` (pyca/bcrypt echoes
/// the input's `2a`/`2b`/`2x`/`2y` prefix). Longer passwords are cut to bcrypt's 72 bytes, as
/// pyca/bcrypt did before 5.0 when such hashes could be made (5.0 raises instead).
fn bcrypt_verify(algorithm: &str, password: &[u8], encoded: &str) -> bool {
    let Some(data) = encoded.strip_prefix(algorithm).and_then(|rest| rest.strip_prefix('$')) else {
        return false;
    };
    let mut fields = data.splitn(4, '$');
    let (Some(""), Some(prefix), Some(cost), Some(rest)) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let version = match prefix {
        "2a" => bcrypt::Version::TwoA,
        "2b" => bcrypt::Version::TwoB,
        "2x" => bcrypt::Version::TwoX,
        "2y" => bcrypt::Version::TwoY,
        _ => return false,
    };
    let Ok(cost) = cost.parse::<u32>() else { return false };
    let Some(salt) = rest.get(..22).and_then(|s| BCRYPT_B64.decode(s).ok()) else { return false };
    let Ok(salt) = <[u8; 16]>::try_from(salt) else { return false };
    if cost > MAX_BCRYPT_COST {
        return false;
    }
    // The bcrypt crate refuses costs outside 4..=31, as pyca/bcrypt does.
    let Ok(parts) = bcrypt::hash_with_salt(password, cost, salt) else { return false };
    same(parts.format_for_version(version).as_bytes(), data.as_bytes())
}

/// `BCryptSHA256PasswordHasher`: bcrypt of the lowercase hex SHA-256 of the password, which
/// sidesteps bcrypt's 72-byte truncation.
pub struct BcryptSha256;

impl Hasher for BcryptSha256 {
    fn identifies(&self, encoded: &str) -> bool {
        algorithm_is(encoded, "bcrypt_sha256")
    }
    fn verify(&self, password: &[u8], encoded: &str) -> bool {
        let digest = sha2::Sha256::digest(password);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        bcrypt_verify("bcrypt_sha256", hex.as_bytes(), encoded)
    }
    fn must_update(&self, _: &str) -> bool {
        true
    }
}

/// `BCryptPasswordHasher`: bcrypt of the raw password.
pub struct Bcrypt;

impl Hasher for Bcrypt {
    fn identifies(&self, encoded: &str) -> bool {
        algorithm_is(encoded, "bcrypt")
    }
    fn verify(&self, password: &[u8], encoded: &str) -> bool {
        bcrypt_verify("bcrypt", password, encoded)
    }
    fn must_update(&self, _: &str) -> bool {
        true
    }
}

/// `ScryptPasswordHasher`: `scrypt$<n>$<salt>$<r>$<p>$<base64 of 64 bytes>`, from
/// `hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=0, dklen=64)`.
pub struct Scrypt;

impl Hasher for Scrypt {
    fn identifies(&self, encoded: &str) -> bool {
        algorithm_is(encoded, "scrypt")
    }

    fn verify(&self, password: &[u8], encoded: &str) -> bool {
        // Django unpacks `split("$", 6)` into six names: a seventh field is an error.
        let fields: Vec<&str> = encoded.split('$').collect();
        let ["scrypt", n, salt, r, p, _] = fields[..] else { return false };
        let (Some(n), Some(r), Some(p)) = (canonical::<u64>(n), canonical::<u32>(r), canonical::<u32>(p)) else {
            return false;
        };
        // OpenSSL's estimate of scrypt's memory: 128*r*(n+2) for V plus 128*r*p for B.
        let memory = 128 * u128::from(r) * (u128::from(n) + 2 + u128::from(p));
        let work = u128::from(n) * u128::from(r) * u128::from(p);
        // hashlib requires n to be a power of two above 1; Django refuses an empty salt.
        if !n.is_power_of_two()
            || !(2..=MAX_SCRYPT_N).contains(&n)
            || memory > MAX_SCRYPT_MEMORY
            || work > MAX_SCRYPT_WORK
        {
            return false;
        }
        if salt.is_empty() {
            return false;
        }
        let Ok(log_n) = u8::try_from(n.trailing_zeros()) else { return false };
        let Ok(params) = scrypt::Params::new(log_n, r, p) else { return false };
        let mut key = [0u8; 64];
        if scrypt::scrypt(password, salt.as_bytes(), &params, &mut key).is_err() {
            return false;
        }
        let expected = format!("scrypt${n}${salt}${r}${p}${}", STANDARD.encode(key));
        same(expected.as_bytes(), encoded.as_bytes())
    }

    fn must_update(&self, _: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The passwords behind each array below, in order.
    const PASSWORDS: [&str; 3] = ["hunter2", "pässwörd✓", "x"];

    // Made by Django 5.2.19's make_password (bcrypt 5.0.0, argon2-cffi 25.1.0) with subclasses
    // at low cost so the tests stay fast: iterations=1000, argon2 m=64 t=1 p=1, bcrypt
    // rounds=4, scrypt n=1024 r=8 p=1.
    const PBKDF2_SHA256: [&str; 3] = [
        "pbkdf2_sha256$1000$TzixmBWPqsHdrNOmrlFVH2$uD+YX0sfTIFBf7OKNmazQvRQK55YnbAAeBKS+ZabzUs=",
        "pbkdf2_sha256$1000$zXvEvm90gsr23t4JJWoAwP$2slAYbyTvtlagvZ/1UxB1Qd7rCX8env5zS0SJBXcz1A=",
        "pbkdf2_sha256$1000$humYlrAveCQUVOWhIjmYEd$rM6DtkxMIVz5xCQK5xMYIEzmFh2aMV+FvQQEu+juh5c=",
    ];
    const PBKDF2_SHA1: [&str; 3] = [
        "pbkdf2_sha1$1000$IgGaRQUxv6yTzjc4X3LRIa$XDx+hfXd07SZLkpe8+dmUhoG9ak=",
        "pbkdf2_sha1$1000$2w1nloxwlz6xn5WuvD1kbe$6joVNc9mU8lVcFYgkJVbhSEvWeM=",
        "pbkdf2_sha1$1000$nnXipDshJGZpP1JJzLKVS7$iSkjtyXnHq4yymHUTT49foghAtU=",
    ];
    const ARGON2: [&str; 3] = [
        "argon2$argon2id$v=19$m=64,t=1,p=1$VDlRSHBTZmxmTzNuM3BPVjVzRUlISw$qu2s7Bn1s2RniXzUsXqCNuqPNk+7bf/7tM97E4xHhY4",
        "argon2$argon2id$v=19$m=64,t=1,p=1$S3d4WExKQlhEc2tqaGJZZVdiQlpzcA$bD6FJ2m2mGrS1aTFihFsxzYgTfQFIucKXTdpFHH4NeI",
        "argon2$argon2id$v=19$m=64,t=1,p=1$b1Q3Zmh5Zkh5b1EwaVVYM2ppV1hYeg$LNB/dE0m8XMQLCd9qy80wA69uLAmU5l2ue1885iwc+4",
    ];
    const BCRYPT_SHA256: [&str; 3] = [
        "bcrypt_sha256$$2b$04$inmpNax3NPrQtx75wlrovu0BrBia5nLgys6qvKIgwLGjerSKG1ZZy",
        "bcrypt_sha256$$2b$04$FZYGbsRUrwsBzh4sBY7MQubSGgYOZO3OEYPxqGLWkBGFRtVeKSBXO",
        "bcrypt_sha256$$2b$04$eBrrozz2zfpd4mu8G19tOeLi3A.wBqOZRXglfOZ2W2g2ZMSwKMF4G",
    ];
    const BCRYPT: [&str; 3] = [
        "bcrypt$$2b$04$r.LFOKVs.LCWfantsqj.benxiOQYO5kePDCyMRiMUIItpt6Ox6mpG",
        "bcrypt$$2b$04$cpZ/tRgEjdF54m8S7.41A.vbSqryTQAS1ppm8LU.y8CyXx0BesIV2",
        "bcrypt$$2b$04$RJrI60KUxp18g5EEz.IfC.j2aHst0wY50LwFJ3nOeS1qEqXMbUwDq",
    ];
    const SCRYPT: [&str; 3] = [
        "scrypt$1024$EUvsb8Tp1QFXijETeDECWy$8$1$rPf3y2esBuVcl1d1frCAFq2SXZOpk6akkwPqcVpzRHISV1f0kWy1qYcOAvSa/UXS9dTuP0yCiAA5PvSyrdqC9A==",
        "scrypt$1024$gS9F3fz5PmyX2xqbT5ZuPm$8$1$dKTofAmhff/zRyIZlMr2iJ3uacRnk3sEP0UQCvivfnIr1erlJygkCEr/KJCbqdnLIDv7wvIOY+f9EwxmLaoqGw==",
        "scrypt$1024$M5QrOekdhqnbiicwE79fXw$8$1$9JAPaFv+AjFy4IgOAVL9MMOkXLWUNpKPSOQ4MR7MLAsBkG4DnS8PhTUWWBwVtp/Ug1htXKT1DM3suT5ndpi1jg==",
    ];

    /// Django's own expected values, from tests/auth_tests/test_hashers.py (5.2.19), with
    /// their passwords. Cheap ones first; the rest use Django's default costs.
    const DJANGO_CHEAP_EXAMPLES: [(&str, &str); 2] = [
        // argon2-cffi hashes from before the version field existed: read as version 0x10.
        (
            "secret",
            "argon2$argon2i$m=8,t=1,p=1$c29tZXNhbHQ$gwQOXSNhxiOxPOA0+PY10P9QFO4NAYysnqRt1GSQLE55m+2GYDt9FEjPMHhP2Cuf0nOEXXMocVrsJAtNSsKyfg",
        ),
        ("secret", "argon2$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$YC9+jJCrQhs5R6db7LlN8Q"),
    ];
    const DJANGO_DEFAULT_COST_EXAMPLES: [(&str, &str); 5] = [
        ("lètmein", "pbkdf2_sha256$1000000$seasalt$r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps="),
        ("lètmein", "pbkdf2_sha1$1000000$seasalt2$3R9hvSAiAy5ARspAFy5GJ/2rjXo="),
        (
            "lètmein",
            "scrypt$16384$seasalt$8$5$ECMIUp+LMxMSK8xB/IVyba+KYGTI7FTnet025q/1f/vBAVnnP3hdYqJuRi+mJn6ji6ze3Fbb7JEFPKGpuEf5vw==",
        ),
        ("secret", "argon2$argon2id$v=19$m=102400,t=2,p=8$Y041dExhNkljRUUy$TMa6A8fPJhCAUXRhJXCXdw"),
        // Not from Django's tests: make_password("hunter2", hasher="bcrypt_sha256") at rounds=12.
        ("hunter2", "bcrypt_sha256$$2b$12$wDbHW7aK6xPDsLXYVNaC1uI19jAhkS5jUfmxQzrNs9WF3mOP3SSAe"),
    ];

    fn all() -> [(&'static str, [&'static str; 3]); 6] {
        [
            ("pbkdf2_sha256", PBKDF2_SHA256),
            ("pbkdf2_sha1", PBKDF2_SHA1),
            ("argon2", ARGON2),
            ("bcrypt_sha256", BCRYPT_SHA256),
            ("bcrypt", BCRYPT),
            ("scrypt", SCRYPT),
        ]
    }

    /// The hasher that identifies `encoded`, checking that exactly one does.
    fn the_hasher(encoded: &str) -> Box<dyn Hasher> {
        let mut found: Vec<_> = hashers().into_iter().filter(|h| h.identifies(encoded)).collect();
        assert_eq!(found.len(), 1, "{encoded}");
        found.remove(0)
    }

    #[test]
    fn right_passwords_verify_and_wrong_ones_do_not() {
        for (_, hashes) in all() {
            for (password, encoded) in PASSWORDS.iter().zip(hashes) {
                let hasher = the_hasher(encoded);
                assert!(hasher.verify(password.as_bytes(), encoded), "{encoded}");
                assert!(hasher.must_update(encoded));
                for wrong in [format!("{password}z"), String::new(), password.to_uppercase(), " ".into()] {
                    assert!(!hasher.verify(wrong.as_bytes(), encoded), "{wrong:?} {encoded}");
                }
            }
        }
    }

    fn assert_examples(examples: &[(&str, &str)]) {
        for (password, encoded) in examples {
            let hasher = the_hasher(encoded);
            assert!(hasher.verify(password.as_bytes(), encoded), "{encoded}");
            assert!(!hasher.verify(b"wrong", encoded), "{encoded}");
        }
    }

    #[test]
    fn djangos_own_examples_verify() {
        assert_examples(&DJANGO_CHEAP_EXAMPLES);
    }

    #[test]
    fn djangos_default_cost_examples_verify() {
        assert_examples(&DJANGO_DEFAULT_COST_EXAMPLES);
    }

    #[test]
    fn each_hasher_identifies_only_its_own_format() {
        let hashers = hashers();
        for (i, (_, hashes)) in all().into_iter().enumerate() {
            for (j, hasher) in hashers.iter().enumerate() {
                assert_eq!(hasher.identifies(hashes[0]), i == j, "hasher {j} on {}", hashes[0]);
            }
        }
        for other in ["", "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "md5$x$y", "!abc", "bcrypt", "argon2id$x"] {
            assert!(hashers.iter().all(|h| !h.identifies(other)), "{other}");
        }
    }

    /// Every malformed variant of a valid hash must be refused, quickly and without panicking.
    fn assert_refused(password: &str, variants: &[String]) {
        for encoded in variants {
            for hasher in hashers() {
                assert!(!hasher.verify(password.as_bytes(), encoded), "{encoded}");
            }
        }
    }

    /// Variants common to all formats: truncations, extra fields, a damaged hash.
    fn generic_variants(encoded: &str) -> Vec<String> {
        // Cut at and around every `$`, and every few characters (each cut costs one hash).
        let cuts = encoded.match_indices('$').flat_map(|(i, _)| [i, i + 1, i + 2]).chain((0..encoded.len()).step_by(9));
        let mut v: Vec<String> = cuts.filter_map(|n| encoded.get(..n)).map(str::to_owned).collect();
        v.push(format!("{encoded}$"));
        v.push(format!("{encoded}$extra"));
        v.push(format!("{encoded}="));
        v.push(format!("{encoded} "));
        v.push(encoded.replacen('$', "$$", 2));
        // Bad base64 in the hash, and a changed last character.
        let (head, _) = encoded.split_at(encoded.len() - 4);
        v.push(format!("{head}!!!!"));
        let last = if encoded.ends_with('A') { 'B' } else { 'A' };
        v.push(format!("{}{last}", &encoded[..encoded.len() - 1]));
        v
    }

    #[test]
    fn malformed_hashes_are_refused() {
        let pw = PASSWORDS[0];
        for (_, hashes) in all() {
            assert_refused(pw, &generic_variants(hashes[0]));
        }
        let p = PBKDF2_SHA256[0];
        assert_refused(
            pw,
            &[
                p.replace("$1000$", "$01000$"),
                p.replace("$1000$", "$+1000$"),
                p.replace("$1000$", "$ 1000$"),
                p.replace("$1000$", "$1_000$"),
                p.replace("$1000$", "$0$"),
                p.replace("$1000$", "$-1000$"),
                p.replace("$1000$", "$1001$"),
                p.replace("$1000$", "$abc$"),
                p.replace("$1000$", "$99999999999$"),
                p.replace("$1000$", "$10000001$"),
                p.replace("$TzixmBWPqsHdrNOmrlFVH2$", "$$"),
                p.trim_end_matches('=').to_owned(),
                p.replace("pbkdf2_sha256", "pbkdf2_sha1"),
            ],
        );
        let a = ARGON2[0];
        assert_refused(
            pw,
            &[
                a.replace("argon2$", "argon2"),
                a.replace("argon2id", "argon2i"),
                a.replace("argon2id", "argon2x"),
                a.replace("v=19", "v=18"),
                a.replace("m=64", "m=65"),
                a.replace("m=64", "m=4294967295"),
                a.replace("m=64", "m=2097152"),
                a.replace("t=1", "t=1000000"),
                a.replace("t=1", "t=0"),
                a.replace("p=1", "p=0"),
                a.replace(",p=1", ",p=1,keyid=AAAA"),
                a.replace("$VDlRSHBTZmxmTzNuM3BPVjVzRUlISw$", "$$"),
                a.replace("$VDlRSHBTZmxmTzNuM3BPVjVzRUlISw$", "$VDlRSHBT!mxmTzNuM3BPVjVzRUlISw$"),
                format!("{a}="),
            ],
        );
        let b = BCRYPT[0];
        assert_refused(
            pw,
            &[
                b.replace("$2b$", "$2c$"),
                b.replace("$2b$", "$2$"),
                b.replace("$04$", "$4$"),
                b.replace("$04$", "$03$"),
                b.replace("$04$", "$05$"),
                b.replace("$04$", "$31$"),
                b.replace("$04$", "$99$"),
                b.replace("$04$", "$-4$"),
                b.replace("bcrypt$$", "bcrypt$"),
                // The salt's last character carries 2 unused bits: a non-canonical one.
                b.replace("qj.be", "qj.bf"),
                b.replace("bcrypt$", "bcrypt_sha256$"),
                format!("{}é", &b[..b.len() - 1]),
            ],
        );
        let s = SCRYPT[0];
        assert_refused(
            pw,
            &[
                s.replace("$1024$", "$1000$"),
                s.replace("$1024$", "$01024$"),
                s.replace("$1024$", "$0$"),
                s.replace("$1024$", "$1$"),
                s.replace("$1024$", "$2048$"),
                s.replace("$1024$", "$2097152$"),
                s.replace("$1024$", "$1048576$"),
                s.replace("$1024$", "$18446744073709551616$"),
                s.replace("$8$1$", "$8$0$"),
                s.replace("$8$1$", "$0$1$"),
                s.replace("$8$1$", "$8$01$"),
                s.replace("$8$1$", "$8$1000000$"),
                s.replace("$8$1$", "$4294967295$4294967295$"),
                s.replace("$EUvsb8Tp1QFXijETeDECWy$", "$$"),
                s.trim_end_matches('=').to_owned(),
            ],
        );
    }

    #[test]
    fn bcrypt_echoes_the_prefix_it_was_given() {
        // pyca/bcrypt hashes identically under 2a/2b/2x/2y and keeps the prefix (checked
        // against bcrypt.hashpw), so Django accepts all four spellings of one hash.
        for prefix in ["$2a$", "$2x$", "$2y$"] {
            let encoded = BCRYPT[0].replace("$2b$", prefix);
            assert!(Bcrypt.verify(PASSWORDS[0].as_bytes(), &encoded), "{encoded}");
        }
    }

    #[test]
    fn raw_bcrypt_uses_the_first_72_bytes_and_bcrypt_sha256_all() {
        let long = "a".repeat(72);
        assert!(Bcrypt.verify(format!("{long}b").as_bytes(), &bcrypt_of(&long)));
        assert!(!BcryptSha256.verify(format!("{long}b").as_bytes(), BCRYPT_SHA256[0]));
    }

    fn bcrypt_of(password: &str) -> String {
        let salt = *b"0123456789abcdef";
        format!(
            "bcrypt${}",
            bcrypt::hash_with_salt(password, 4, salt).unwrap().format_for_version(bcrypt::Version::TwoB)
        )
    }
}
