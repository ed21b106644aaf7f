//! Randomness, digests and comparisons used for every secret the server hands out.
use rand::{Rng as _, TryRng as _, rngs::SysRng};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `N` bytes from the operating system's CSPRNG (the thread-local CSPRNG, itself seeded by
/// the OS, only if the OS source fails).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if SysRng.try_fill_bytes(&mut buf).is_err() {
        rand::rng().fill_bytes(&mut buf);
    }
    buf
}

/// `bytes` random bytes as lowercase hex (DRF's token format is `random_hex(20)`).
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        let chunk = random_bytes::<32>();
        let need = (bytes * 2 - out.len()).div_ceil(2).min(32);
        out.push_str(&hex::encode(&chunk[..need]));
    }
    out
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias);
/// Django's `get_random_string`.
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    let limit = 256 - 256 % alphabet.len().max(1);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>() {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// The SHA-256 digest a secret is stored and looked up by.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality, for comparing secrets with what a client sent.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_has_the_asked_length_and_alphabet() {
        for n in [1, 20, 33, 64] {
            let s = random_hex(n);
            assert_eq!(s.len(), n * 2);
            assert!(s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_ne!(random_hex(20), random_hex(20));
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(hex::encode(digest("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
