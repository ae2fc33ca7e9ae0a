//! wazuh-db socket framing (`clusterd::store::wire`): a 4-byte length then text, and the
//! `status payload` reply inside; a reply that parses must encode and decode back the same.
#![no_main]

use clusterd::store::wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::frame_len(data);
    let _ = wire::decode_exact(data);
    if let Ok(Some((text, used))) = wire::decode(data) {
        assert!(used <= data.len());
        if let Ok(reply) = wire::parse_reply(text) {
            if let Ok(frame) = wire::encode_reply(&reply) {
                let back = wire::decode_exact(&frame).expect("own frame decodes");
                let again = wire::parse_reply(back).expect("own reply parses");
                assert_eq!(again.status, reply.status);
                assert_eq!(again.payload, reply.payload);
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = wire::parse_reply(&text);
    if let Ok(frame) = wire::encode(&text) {
        assert_eq!(wire::decode_exact(&frame).expect("own frame"), text);
    }
});
