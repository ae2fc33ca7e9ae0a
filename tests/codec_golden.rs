//! Golden vectors: the worked examples of the protocol description and Fernet tokens produced by the
//! reference (Python `cryptography`) implementation, committed under `tests/data/`.

use std::time::Instant;

use clusterd::proto::crypto::Cipher;
use clusterd::proto::decoder::{DecodeLimits, Decoder};
use clusterd::proto::encoder::encode_message;
use clusterd::proto::frame::{command_field, decode_header, encode_header, REQUEST_CHUNK_BYTES};

const KEY: &str = "c98b62a9b6169ac5f67dae55ae4a9088";
const HELLO_TOKEN: &str = "gAAAAABlU_EAAAECAwQFBgcICQoLDA0OD4LUo7M46204EJq6jWPsyUVkrNNJ8pmE8TgD5mze-tEXG1wv5hjn24QgwKSbxEzB9HE5PsvUdmafQh-ZKF-t4-U=";

fn hello_frame() -> Vec<u8> {
    let mut wire = vec![0x49, 0x96, 0x02, 0xd2, 0x00, 0x00, 0x00, 0x78];
    wire.extend_from_slice(b"hello ------");
    wire.extend_from_slice(HELLO_TOKEN.as_bytes());
    wire
}

#[test]
fn worked_example_a_hello_frame_decodes_and_decrypts() {
    let wire = hello_frame();
    assert_eq!(wire.len(), 140);
    let mut decoder = Decoder::new(DecodeLimits::default());
    let mut out = Vec::new();
    decoder.feed(&wire, Instant::now(), &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].counter, 1_234_567_890);
    assert_eq!(out[0].command, "hello");
    let cipher = Cipher::from_cluster_key(KEY).unwrap();
    assert_eq!(
        cipher.decrypt(&out[0].payload).unwrap(),
        b"worker1 wazuh worker 4.14.7"
    );
}

#[test]
fn worked_example_a_header_is_built_byte_for_byte() {
    let header = encode_header(
        1_234_567_890,
        120,
        &command_field("hello", false, false).unwrap(),
    );
    assert_eq!(&header[..], &hello_frame()[..20]);
    // The reply header: same counter, command ok.
    let reply = encode_header(
        1_234_567_890,
        120,
        &command_field("ok", false, false).unwrap(),
    );
    assert_eq!(&reply[..], b"\x49\x96\x02\xd2\x00\x00\x00\x78ok ---------");
    // A frame we encrypt ourselves has the same shape and opens with the same key.
    let cipher = Cipher::from_cluster_key(KEY).unwrap();
    let frames = encode_message(
        1_234_567_890,
        "ok",
        b"Client worker1 added",
        &cipher,
        REQUEST_CHUNK_BYTES,
    )
    .unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(&frames[0][..20], &reply[..]);
    assert_eq!(frames[0].len(), 140);
    assert_eq!(
        cipher.decrypt(&frames[0][20..]).unwrap(),
        b"Client worker1 added"
    );
}

#[test]
fn worked_example_b_local_get_config_frame() {
    let frames = encode_message(
        0xdead_beef,
        "get_config",
        b"",
        &Cipher::Plain,
        REQUEST_CHUNK_BYTES,
    )
    .unwrap();
    assert_eq!(&frames[0][4..], b"\x00\x00\x00\x00get_config -");
    let header = decode_header(frames[0][..20].try_into().unwrap());
    assert_eq!(
        (header.counter, header.length, header.command.as_str()),
        (0xdead_beef, 0, "get_config")
    );
}

#[test]
fn reference_fernet_tokens_decrypt() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fernet_vectors.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 5);
    for v in vectors {
        let cipher = Cipher::from_cluster_key(v["key"].as_str().unwrap()).unwrap();
        let token = v["token"].as_str().unwrap();
        let plaintext = hex::decode(v["plaintext_hex"].as_str().unwrap()).unwrap();
        assert_eq!(
            cipher.decrypt(token.as_bytes()).unwrap(),
            plaintext,
            "token {token}"
        );
        assert_eq!(token.len(), cipher.token_bytes(plaintext.len()));
        // Our own tokens for the same plaintext open with the same key (timestamps and IVs differ).
        assert_eq!(
            cipher.decrypt(&cipher.encrypt(&plaintext)).unwrap(),
            plaintext
        );
    }
    // The first vector is the protocol's worked example, byte for byte.
    assert_eq!(vectors[0]["token"].as_str().unwrap(), HELLO_TOKEN);
}

#[test]
fn tokens_from_a_clock_far_ahead_are_accepted() {
    // One vector is stamped in the year 2100: stock nodes ignore Fernet timestamps, so must we.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/fernet_vectors.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let future = doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["timestamp"].as_u64() == Some(4_102_444_800))
        .unwrap();
    let cipher = Cipher::from_cluster_key(future["key"].as_str().unwrap()).unwrap();
    assert_eq!(
        cipher
            .decrypt(future["token"].as_str().unwrap().as_bytes())
            .unwrap(),
        b"keepalive"
    );
}
