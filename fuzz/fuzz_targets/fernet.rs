//! Fernet decryption (`clusterd::proto::crypto::Cipher::decrypt`) of a token a peer sent, with
//! the cluster key of the protocol's examples; a token that decrypts must re-encrypt to the same
//! plaintext.
#![no_main]

use clusterd::proto::crypto::Cipher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cipher = Cipher::from_cluster_key(fuzz_common::KEY).expect("key");
    if let Ok(plain) = cipher.decrypt(data) {
        let again = cipher.encrypt(&plain);
        assert_eq!(cipher.decrypt(&again).expect("own token"), plain);
        assert_eq!(again.len(), cipher.token_bytes(plain.len()));
    }
    // Any text of 32 bytes is a key; other lengths are refused without panicking.
    if data.len() <= 64 {
        let _ = Cipher::from_cluster_key(&String::from_utf8_lossy(data));
    }
});
