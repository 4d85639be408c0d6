//! Random secrets and how they are kept: high-entropy values are stored as SHA-256 only (no slow hash is
//! needed for 128+ bits of entropy), compared in constant time, and shown to a person exactly once.

use sha2::{Digest, Sha256};

/// Alphabet for codes a person types: no 0/O, 1/I/L.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

pub(crate) fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// 32 random bytes as hex.
pub(crate) fn random_hex32() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A one-time enrollment code such as `7KQ4-M2XP-9RTD` (about 59 bits).
pub(crate) fn enrollment_code() -> String {
    let chars: Vec<char> = (0..12).map(|_| CODE_ALPHABET[rand::random_range(0..CODE_ALPHABET.len())] as char).collect();
    format!(
        "{}-{}-{}",
        chars[..4].iter().collect::<String>(),
        chars[4..8].iter().collect::<String>(),
        chars[8..].iter().collect::<String>()
    )
}

/// The form in which codes are hashed: upper case, no separators, so `7kq4 m2xp 9rtd` works too.
pub(crate) fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_readable_and_normalise() {
        let code = enrollment_code();
        assert_eq!(code.len(), 14);
        assert!(!code.contains(['0', 'O', '1', 'I', 'L']));
        assert_eq!(normalise_code(&code.to_lowercase().replace('-', " ")), code.replace('-', ""));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
