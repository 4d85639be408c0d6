//! HMAC-SHA256 for the keys the service derives from its one configured secret: each purpose (CSRF
//! tokens, audit anchors) gets a key of its own, so a tag made for one can never pass for another, and
//! the secret itself (also the device tokens' signing key) is never used directly.

use hmac::{Hmac, Mac};
use sha2::Sha256;

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC-SHA256 takes keys of any length, so this cannot fail.
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The key for one `purpose` (a fixed label with a version), derived from `secret`.
pub fn derive_key(secret: &[u8], purpose: &[u8]) -> Vec<u8> {
    hmac_sha256(secret, &[purpose]).to_vec()
}

/// HMAC-SHA256 under `key` over `parts`, in order.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = mac(key);
    for part in parts {
        m.update(part);
    }
    m.finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC of `parts` under `key`, compared in constant time.
pub fn hmac_matches(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut m = mac(key);
    for part in parts {
        m.update(part);
    }
    m.verify_slice(tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_purpose_and_tags_check() {
        let (a, b) = (derive_key(b"secret", b"one v1"), derive_key(b"secret", b"two v1"));
        assert_ne!(a, b);
        let tag = hmac_sha256(&a, &[b"x", b"\n", b"y"]);
        assert!(hmac_matches(&a, &[b"x", b"\n", b"y"], &tag));
        assert!(!hmac_matches(&b, &[b"x", b"\n", b"y"], &tag));
        assert!(!hmac_matches(&a, &[b"x\n", b"z"], &tag));
    }
}
