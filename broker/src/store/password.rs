//! Password hashing: argon2id with a random 16-byte salt, kept as a PHC
//! string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), so the
//! parameters travel with each hash and can be raised later without
//! breaking the accounts already made.
//!
//! Parameters: m = 19 MiB, t = 2, p = 1, OWASP's recommended minimum for
//! argon2id (Password Storage Cheat Sheet), which suits a chat server on a
//! small box: each hash in flight holds 19 MiB, and the work is one core.
//! Measured here (release build, `cargo test -p broker --release --lib
//! store::password -- --ignored --nocapture`) on a 2-vCPU Intel Xeon VM:
//! about 24 ms per hash and 18 ms per verify, so one thread checks at most
//! ~50 passwords a second. That is why hashing runs on the accounts
//! thread, never on a routing thread, and why wrong passwords are slowed
//! down before they are checked again.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// Memory per hash, in KiB (19 MiB).
const M_COST: u32 = 19 * 1024;
/// Passes over the memory.
const T_COST: u32 = 2;
/// Lanes (threads' worth of work, computed on one thread here).
const P_COST: u32 = 1;

/// The most memory a stored hash may ask `verify_password` for (KiB): a
/// hash string, even one edited in the database, must not make a login
/// allocate without bound.
const MAX_M_COST: u32 = 256 * 1024;
/// The most passes a stored hash may ask for.
const MAX_T_COST: u32 = 16;
/// The most lanes a stored hash may ask for.
const MAX_P_COST: u32 = 8;

fn hasher() -> Result<Argon2<'static>, String> {
    let params =
        Params::new(M_COST, T_COST, P_COST, None).map_err(|e| format!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with argon2id and a fresh random salt; the result is a
/// PHC string. Fails only if the system's random source does.
pub(crate) fn hash_password(password: &str) -> Result<String, String> {
    let hash = hasher()?
        .hash_password(password.as_bytes())
        .map_err(|e| format!("cannot hash a password: {e}"))?;
    Ok(hash.to_string())
}

/// True if `password` matches the PHC string `phc` (made by
/// [`hash_password`], with the parameters it records). A malformed string,
/// another algorithm than argon2id or parameters past sane bounds give
/// `false`. The comparison is constant-time (done by the argon2 crate).
pub(crate) fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST
    {
        return false;
    }
    hasher().is_ok_and(|h| h.verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_and_wrong_passwords() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct hors", &phc));
        assert!(!verify_password("", &phc));
        // A fresh salt each time.
        assert_ne!(phc, hash_password("correct horse").unwrap());
    }

    #[test]
    fn malformed_or_greedy_hashes_are_refused() {
        assert!(!verify_password("x", ""));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("x", "$argon2id$v=19$m=19456,t=2,p=1$"));
        let phc = hash_password("password1").unwrap();
        let greedy = phc.replace("m=19456", "m=4194304");
        assert!(!verify_password("password1", &greedy));
        let argon2i = phc.replace("$argon2id$", "$argon2i$");
        assert!(!verify_password("password1", &argon2i));
    }

    /// Prints how long one hash takes; run it in release (see the module
    /// doc) to refresh the figure there.
    #[test]
    #[ignore = "a timing, not a check"]
    fn time_one_hash() {
        let _ = hash_password("warm up the allocator").unwrap();
        let n = 20;
        let start = std::time::Instant::now();
        for i in 0..n {
            let _ = hash_password(&format!("password{i}")).unwrap();
        }
        let per = start.elapsed() / n;
        let phc = hash_password("password").unwrap();
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(verify_password("password", &phc));
        }
        let verify = start.elapsed() / n;
        println!("argon2id m=19MiB t=2 p=1: {per:?} per hash, {verify:?} per verify");
    }
}
