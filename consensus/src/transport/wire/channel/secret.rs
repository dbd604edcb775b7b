//! The cluster secret and the HMAC-SHA256 primitives built on it (the
//! handshake proofs, the session key and every frame tag use these).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{ChannelError, MIN_SECRET_LEN, TAG_LEN};

type HmacSha256 = Hmac<Sha256>;

/// The shared secret every cluster member holds.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl ClusterSecret {
    /// Wraps `bytes`; at least `MIN_SECRET_LEN` bytes are required.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ChannelError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ChannelError::WeakSecret(bytes.len()));
        }
        Ok(ClusterSecret(bytes))
    }

    /// HMAC-SHA256 under the secret over the concatenation of `parts`.
    pub(super) fn mac(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        mac_with(&self.0, parts)
    }

    /// Whether `tag` is the secret's MAC over `parts` (constant time).
    pub(super) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        verify_with(&self.0, parts, tag)
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; the error branch is unreachable, but
    // falling back to an empty-key MAC would be wrong, so hash the key first.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => {
            use sha2::Digest;
            let digest = Sha256::digest(key);
            HmacSha256::new_from_slice(&digest).unwrap_or_else(|_| unreachable!("32-byte key"))
        }
    }
}

/// HMAC-SHA256 under `key` over the concatenation of `parts`.
pub(super) fn mac_with(key: &[u8], parts: &[&[u8]]) -> [u8; TAG_LEN] {
    let mut mac = new_mac(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is the MAC under `key` over `parts` (constant time).
pub(super) fn verify_with(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = new_mac(key);
    for p in parts {
        mac.update(p);
    }
    // Constant-time comparison.
    mac.verify_slice(tag).is_ok()
}
