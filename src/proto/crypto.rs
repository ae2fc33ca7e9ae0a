//! Payload encryption of the cluster channel (PROTOCOL.md §1.5): Fernet keyed by the 32-character
//! cluster key. The local Unix channel carries plaintext, so a [`Cipher`] may also be `Plain`.

use base64::Engine as _;

/// Bytes a cluster key must have: Fernet needs 16 signing plus 16 encryption key bytes.
pub const CLUSTER_KEY_BYTES: usize = 32;

/// Why a payload could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the cluster key must be exactly 32 bytes, found {0}")]
    KeyLength(usize),
    /// Wrong key or corrupted token: both look the same to Fernet (the HMAC does not verify).
    #[error(
        "could not decrypt message (the sender's cluster key differs or the token is corrupted)"
    )]
    Decrypt,
}

/// Encrypts and decrypts whole message payloads.
#[derive(Clone)]
pub enum Cipher {
    /// Local socket: payloads travel as they are.
    Plain,
    /// Cluster TCP channel.
    Fernet(Box<fernet::Fernet>),
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cipher::Plain => f.write_str("Cipher::Plain"),
            Cipher::Fernet(_) => f.write_str("Cipher::Fernet"),
        }
    }
}

impl Cipher {
    /// Keys Fernet with the cluster key: its 32 bytes, standard-base64 encoded, are the Fernet key,
    /// so bytes 0–15 sign and bytes 16–31 encrypt (the same derivation as stock Wazuh nodes).
    pub fn from_cluster_key(key: &str) -> Result<Cipher, CryptoError> {
        if key.len() != CLUSTER_KEY_BYTES {
            return Err(CryptoError::KeyLength(key.len()));
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
        let fernet = fernet::Fernet::new(&encoded).ok_or(CryptoError::KeyLength(key.len()))?;
        Ok(Cipher::Fernet(Box::new(fernet)))
    }

    /// Encrypts a whole payload (before it is divided into frames).
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        match self {
            Cipher::Plain => plaintext.to_vec(),
            Cipher::Fernet(f) => f.encrypt(plaintext).into_bytes(),
        }
    }

    /// Decrypts a whole payload (after its frames were reassembled). The token's timestamp is ignored,
    /// as stock nodes do: clocks of cluster nodes may disagree by any amount.
    pub fn decrypt(&self, token: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match self {
            Cipher::Plain => Ok(token.to_vec()),
            Cipher::Fernet(f) => {
                let text = std::str::from_utf8(token).map_err(|_| CryptoError::Decrypt)?;
                // The crate always rejects tokens stamped more than 60 s after "now"; with no TTL and
                // "now" at the end of time, that check can never fire.
                f.decrypt_at_time(text, None, u64::MAX - 3600)
                    .map_err(|_| CryptoError::Decrypt)
            }
        }
    }

    /// Length of the token produced for a plaintext of `plaintext_bytes` (PROTOCOL.md §1.5).
    pub fn token_bytes(&self, plaintext_bytes: usize) -> usize {
        match self {
            Cipher::Plain => plaintext_bytes,
            Cipher::Fernet(_) => 4 * (57 + 16 * (plaintext_bytes / 16 + 1)).div_ceil(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";

    #[test]
    fn token_length_formula_matches_real_tokens() {
        let c = Cipher::from_cluster_key(KEY).unwrap();
        for len in [0usize, 1, 15, 16, 27, 100, 4097] {
            assert_eq!(
                c.encrypt(&vec![b'a'; len]).len(),
                c.token_bytes(len),
                "len {len}"
            );
        }
        assert_eq!(c.token_bytes(0), 100);
        assert_eq!(c.token_bytes(16), 120);
        assert_eq!(c.token_bytes(5_242_880), 6_990_604);
    }

    #[test]
    fn wrong_key_and_tampering_are_decrypt_errors() {
        let a = Cipher::from_cluster_key(KEY).unwrap();
        let b = Cipher::from_cluster_key("00000000000000000000000000000000").unwrap();
        let token = a.encrypt(b"secret");
        assert_eq!(b.decrypt(&token), Err(CryptoError::Decrypt));
        let mut bad = token.clone();
        bad[50] ^= 1;
        assert_eq!(a.decrypt(&bad), Err(CryptoError::Decrypt));
        assert_eq!(a.decrypt(&[0xff, 0xfe]), Err(CryptoError::Decrypt));
        assert_eq!(a.decrypt(&token).unwrap(), b"secret");
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            Cipher::from_cluster_key("abc").unwrap_err(),
            CryptoError::KeyLength(3)
        );
    }
}
