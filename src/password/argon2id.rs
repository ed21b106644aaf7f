//! Our argon2id: PHC strings at the configured parameters, computed in reused memory.
//!
//! The `argon2` crate's `hash_password` and `verify_password` allocate the whole working area
//! (m KiB, 19 MiB by default) at every call and free it afterwards. glibc returns the first
//! such block to the system, then raises its mmap threshold above that size and keeps the
//! later ones in its arenas, fragmented: a storm of failed logins left the server at ~1 GB
//! for good (issue #19). Here every hashing permit owns one working area (`Scratch`) for the
//! life of the process, and each hash and verification is computed in the area of its permit.
//! The output is what the crate's own functions give: the same PHC string from `hash`, the
//! same answer from `verify` (tests below check both ways against them).

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{
        phc::{Output, ParamsString, PasswordHash, Salt},
        try_generate_salt,
    },
};
use subtle::ConstantTimeEq as _;

use super::HashError;
use crate::config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    pub fn from_settings(s: &config::Password) -> Result<Self, HashError> {
        let params = Self {
            memory_kib: s.argon2_memory_kib,
            iterations: s.argon2_iterations,
            parallelism: s.argon2_parallelism,
        };
        params.argon2().map(|_| params.clone())
    }

    fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None).map_err(|e| {
            HashError::Params(format!(
                "argon2 parameters m={} t={} p={}: {e}",
                self.memory_kib, self.iterations, self.parallelism
            ))
        })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// One argon2 working area, sized for the configured parameters. It is allocated at its
/// first use (an idle server holds only the areas its logins have needed so far) and then
/// kept: a storm costs at most one area per hashing permit, once.
pub struct Scratch {
    blocks: Vec<Block>,
    capacity: usize,
}

impl Scratch {
    /// An area of `capacity` blocks (of 1 KiB), allocated at its first use.
    pub fn new(capacity: usize) -> Self {
        Self { blocks: Vec::new(), capacity }
    }

    /// `argon2`'s output for `password` and `salt`, written to `out`.
    fn compute(&mut self, argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), HashError> {
        let needed = argon2.params().block_count();
        if needed > self.capacity {
            // A stored hash made with more memory than configured (the setting was lowered
            // since): a temporary allocation for this call, the crate's own. Rare: such a hash
            // `must_update`, so it is replaced at the user's next successful login.
            return argon2.hash_password_into(password, salt, out).map_err(|e| HashError::Hash(e.to_string()));
        }
        if self.blocks.len() < self.capacity {
            // try_reserve: without memory for the area this login fails, the process does not abort.
            self.blocks
                .try_reserve_exact(self.capacity - self.blocks.len())
                .map_err(|e| HashError::Hash(format!("argon2 working area: {e}")))?;
            self.blocks.resize(self.capacity, Block::new());
        }
        // No need to clear what an earlier hash left: argon2 writes every block before reading it.
        let area =
            self.blocks.get_mut(..needed).ok_or_else(|| HashError::Hash("argon2 working area too small".into()))?;
        argon2.hash_password_into_with_memory(password, salt, out, area).map_err(|e| HashError::Hash(e.to_string()))
    }
}

/// argon2id in the PHC string format, at the configured parameters.
pub struct Argon2id {
    params: Argon2Params,
    argon2: Argon2<'static>,
}

impl Argon2id {
    pub fn new(params: Argon2Params) -> Result<Self, HashError> {
        Ok(Self { argon2: params.argon2()?, params })
    }

    /// The working area a hash at the configured parameters needs, in blocks.
    pub fn blocks(&self) -> usize {
        self.argon2.params().block_count()
    }

    /// Whether `encoded` is in this hasher's format.
    pub fn identifies(&self, encoded: &str) -> bool {
        encoded.starts_with("$argon2id$")
    }

    /// A new PHC string, as `argon2`'s `hash_password` makes it: a random 16-byte salt, the
    /// configured costs, version 19, a 32-byte output.
    pub fn hash(&self, password: &[u8], scratch: &mut Scratch) -> Result<String, HashError> {
        let salt = try_generate_salt().map_err(|e| HashError::Hash(format!("no random salt: {e}")))?;
        let mut buffer = [0u8; Output::MAX_LENGTH];
        let length = self.argon2.params().output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let out = buffer.get_mut(..length).ok_or_else(|| HashError::Hash("argon2 output too long".into()))?;
        scratch.compute(&self.argon2, password, &salt, out)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(self.argon2.params()).map_err(|e| HashError::Hash(e.to_string()))?,
            salt: Some(Salt::new(&salt).map_err(|e| HashError::Hash(e.to_string()))?),
            hash: Some(Output::new(out).map_err(|e| HashError::Hash(e.to_string()))?),
        };
        Ok(phc.to_string())
    }

    /// Constant-time check of `password` against a PHC string. As `argon2`'s
    /// `verify_password`, everything comes from the stored string (variant, version, 0x13 when
    /// absent, costs, output length, keyid and data), so hashes made under older settings verify.
    pub fn verify(&self, password: &[u8], encoded: &str, scratch: &mut Scratch) -> bool {
        let Ok(hash) = PasswordHash::new(encoded) else { return false };
        let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
        let Ok(algorithm) = hash.algorithm.as_str().parse::<Algorithm>() else { return false };
        let Ok(version) = hash.version.map(Version::try_from).transpose() else { return false };
        let Ok(params) = Params::try_from(&hash) else { return false };
        let argon2 = Argon2::new(algorithm, version.unwrap_or_default(), params);
        let mut buffer = [0u8; Output::MAX_LENGTH];
        let Some(actual) = buffer.get_mut(..expected.len()) else { return false };
        scratch.compute(&argon2, password, salt.as_ref(), actual).is_ok()
            && bool::from(actual.ct_eq(expected.as_bytes()))
    }

    /// Whether a hash should be replaced: weaker than configured, or made with a different
    /// amount of memory. More memory than configured would not fit in the working areas and
    /// cost a temporary allocation at every login; Django's `must_update` replaces a hash
    /// whose parameters differ in any way.
    pub fn must_update(&self, encoded: &str) -> bool {
        let Ok(hash) = PasswordHash::new(encoded) else { return true };
        let Ok(stored) = Params::try_from(&hash) else { return true };
        hash.version != Some(Version::V0x13.into())
            || stored.m_cost() != self.params.memory_kib
            || stored.t_cost() < self.params.iterations
            || stored.p_cost() < self.params.parallelism
    }
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    const CONFIGURED: Argon2Params = Argon2Params { memory_kib: 19456, iterations: 2, parallelism: 1 };

    fn ours(params: Argon2Params) -> (Argon2id, Scratch) {
        let hasher = Argon2id::new(params).unwrap();
        let scratch = Scratch::new(hasher.blocks());
        (hasher, scratch)
    }

    /// The crate's own `hash_password`, the way this server hashed before the working areas.
    fn stock_hash(algorithm: Algorithm, version: Version, params: Params, password: &[u8]) -> String {
        Argon2::new(algorithm, version, params).hash_password(password).unwrap().to_string()
    }

    fn stock_verifies(password: &[u8], encoded: &str) -> bool {
        Argon2::default().verify_password(password, &PasswordHash::new(encoded).unwrap()).is_ok()
    }

    #[test]
    fn new_hashes_keep_the_phc_format_and_verify_with_the_crate() {
        let (hasher, mut scratch) = ours(CONFIGURED);
        let hash = hasher.hash(b"correct horse", &mut scratch).unwrap();
        let stock = stock_hash(Algorithm::Argon2id, Version::V0x13, Params::new(19456, 2, 1, None).unwrap(), b"x");
        // $argon2id$v=19$m=19456,t=2,p=1$<16-byte salt: 22 chars>$<32-byte output: 43 chars>
        for encoded in [&hash, &stock] {
            let fields: Vec<&str> = encoded.split('$').collect();
            assert_eq!(fields[..4], ["", "argon2id", "v=19", "m=19456,t=2,p=1"], "{encoded}");
            assert_eq!((fields.len(), fields[4].len(), fields[5].len()), (6, 22, 43), "{encoded}");
        }
        assert_eq!(PasswordHash::new(&hash).unwrap().to_string(), hash, "canonical encoding");
        assert!(stock_verifies(b"correct horse", &hash));
        assert!(!stock_verifies(b"correct horse!", &hash));
        assert!(hasher.verify(b"correct horse", &hash, &mut scratch));
        assert!(!hasher.verify(b"Correct horse", &hash, &mut scratch));
        assert_ne!(hasher.hash(b"correct horse", &mut scratch).unwrap(), hash, "a fresh salt each time");
    }

    #[test]
    fn the_crates_hashes_verify_in_a_reused_area_whatever_their_parameters() {
        let (hasher, mut scratch) = ours(Argon2Params { memory_kib: 4096, iterations: 1, parallelism: 1 });
        let params = |m, t, p, len| Params::new(m, t, p, len).unwrap();
        let cases = [
            (Algorithm::Argon2id, Version::V0x13, params(4096, 1, 1, None)), // as configured
            (Algorithm::Argon2id, Version::V0x13, params(1024, 3, 2, None)), // smaller, two lanes
            (Algorithm::Argon2id, Version::V0x13, params(8, 1, 1, Some(64))), // the minimum, long output
            (Algorithm::Argon2id, Version::V0x10, params(2048, 1, 1, Some(16))), // old version, short output
            (Algorithm::Argon2id, Version::V0x13, params(19456, 2, 1, None)), // larger: a temporary area
            (Algorithm::Argon2id, Version::V0x13, params(4096, 1, 1, None)), // and the area again
        ];
        for (algorithm, version, params) in cases {
            let encoded = stock_hash(algorithm, version, params, b"pw");
            assert!(hasher.verify(b"pw", &encoded, &mut scratch), "{encoded}");
            assert!(!hasher.verify(b"pW", &encoded, &mut scratch), "{encoded}");
        }
        assert_eq!(scratch.blocks.len(), 4096, "the larger hash did not grow the area");
    }

    #[test]
    fn a_missing_version_is_0x13_as_in_the_crate_and_malformed_strings_fail() {
        let (hasher, mut scratch) = ours(Argon2Params { memory_kib: 64, iterations: 1, parallelism: 1 });
        let encoded = stock_hash(Algorithm::Argon2id, Version::V0x13, Params::new(64, 1, 1, None).unwrap(), b"pw");
        let unversioned = encoded.replace("$v=19", "");
        assert!(stock_verifies(b"pw", &unversioned));
        assert!(hasher.verify(b"pw", &unversioned, &mut scratch));
        let (head, _) = encoded.rsplit_once('$').unwrap();
        for bad in
            [head.to_owned(), format!("{head}$"), encoded.replace("t=1", "t=0"), format!("{encoded}$x"), String::new()]
        {
            assert!(!hasher.verify(b"pw", &bad, &mut scratch), "{bad}");
        }
    }

    #[test]
    fn a_hash_with_other_memory_or_weaker_costs_needs_upgrade() {
        let (hasher, _) = ours(Argon2Params { memory_kib: 4096, iterations: 2, parallelism: 2 });
        let hash =
            |m, t, p| stock_hash(Algorithm::Argon2id, Version::V0x13, Params::new(m, t, p, None).unwrap(), b"pw");
        assert!(!hasher.must_update(&hash(4096, 2, 2)));
        assert!(!hasher.must_update(&hash(4096, 3, 4)), "more passes or lanes: kept");
        assert!(hasher.must_update(&hash(2048, 2, 2)), "less memory");
        assert!(hasher.must_update(&hash(8192, 2, 2)), "more memory than the working areas hold");
        assert!(hasher.must_update(&hash(4096, 1, 2)));
        assert!(hasher.must_update(&hash(4096, 2, 1)));
    }
}
