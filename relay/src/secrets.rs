//! Random secrets, their stored digests, and password hashing.
//!
//! Tokens, device secrets and deployment codes are random and long, so a SHA-256 digest is enough
//! to store them; passwords are chosen by people, so they get argon2id.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// Failure of the operating system's random source or of the password hasher (our fault).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The operating system gave no randomness.
    #[error("no randomness available: {0}")]
    Random(String),
    /// Argon2 failed to hash.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

/// A random secret of 256 bits as 64 hex characters: sign-in tokens, device secrets.
pub fn new_token() -> Result<String, SecretError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// A random identifier of 128 bits as 32 hex characters.
pub fn new_id() -> Result<String, SecretError> {
    Ok(hex::encode(random_bytes::<16>()?))
}

/// A random code of `digits` decimal digits, drawn without modulo bias.
pub fn new_digits(digits: usize) -> Result<String, SecretError> {
    let mut out = String::with_capacity(digits);
    while out.len() < digits {
        for b in random_bytes::<16>()? {
            // 250 is the largest multiple of 10 under 256: rejecting the rest keeps digits uniform.
            if b < 250 && out.len() < digits {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    Ok(out)
}

/// The stored form of a random secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Hashes a password with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// A valid hash of no real password, verified against when an account does not exist so that
/// unknown addresses cost as much time as wrong passwords.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no account has this password").unwrap_or_default())
}

/// Whether `password` matches the stored PHC string; a malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_when_right() {
        let stored = hash_password("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("wrong horse", &stored));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn codes_are_digits_and_tokens_differ() {
        let code = new_digits(9).unwrap();
        assert_eq!(code.len(), 9);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_ne!(new_token().unwrap(), new_token().unwrap());
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a"), digest("b"));
    }
}
