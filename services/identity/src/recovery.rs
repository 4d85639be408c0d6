//! One-time recovery codes: the way back in when the authenticator app is lost, without an owner's help.
//!
//! Ten codes of 80 random bits each, written `ABCD-EFGH-JKLM-NPQR` in Crockford's base32 (no I, L, O, U,
//! so nothing reads as 1 or 0). 80 bits make a stored SHA-256 enough (no slow hash needed: there is no
//! dictionary to try). A code is typed back with or without hyphens, in any case, full-width or not.

use rand::RngCore;

/// Codes made at a time.
pub const CODES: usize = 10;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `CODES` fresh codes, as shown to the person once.
pub fn generate() -> Vec<String> {
    let mut rng = rand::rng();
    (0..CODES)
        .map(|_| {
            let mut bytes = [0u8; 10];
            rng.fill_bytes(&mut bytes);
            let mut bits: u128 = 0;
            for b in bytes {
                bits = (bits << 8) | u128::from(b);
            }
            let chars: Vec<char> = (0..16).rev().map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char).collect();
            chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
        })
        .collect()
}

/// The code as typed, normalised: full-width folded, hyphens and spaces dropped, upper case, and the
/// letters Crockford reads as digits mapped to them. `None` when it cannot be a recovery code.
pub fn normalise(typed: &str) -> Option<String> {
    let folded: String = typed
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            other => other,
        })
        .filter(|c| !matches!(c, '-' | ' ' | '\u{3000}' | '\u{2010}'..='\u{2015}' | '\u{30FC}'))
        .map(|c| match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            other => other,
        })
        .collect();
    (folded.len() == 16 && folded.bytes().all(|b| ALPHABET.contains(&b))).then_some(folded)
}

/// What the store keeps for a code (as generated or as typed).
pub fn hash(code: &str) -> Option<String> {
    normalise(code).map(|n| crate::token::sha256_hex(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_readable_and_match_however_they_are_typed() {
        let codes = generate();
        assert_eq!(codes.len(), CODES);
        let distinct: std::collections::BTreeSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), CODES);
        let code = &codes[0];
        assert_eq!(code.len(), 19);
        assert!(code.chars().all(|c| c == '-' || ALPHABET.contains(&(c as u8))));
        let stored = hash(code).unwrap();
        assert_eq!(hash(&code.to_lowercase().replace('-', " ")), Some(stored.clone()));
        let full_width: String =
            code.chars().map(|c| if c == '-' { 'ー' } else { char::from_u32(c as u32 + 0xFEE0).unwrap() }).collect();
        assert_eq!(hash(&full_width), Some(stored));
        assert_eq!(hash("123456"), None, "a TOTP code is not a recovery code");
        assert_eq!(hash("ABCD-EFGH-JKLM-NPQU"), None, "U is not in the alphabet");
    }
}
