//! `err` payloads a peer answers (`clusterd::proto::wazuh_error::WazuhError::from_payload`):
//! a JSON exception or plain text; the error then renders as the node logs and re-sends it.
#![no_main]

use clusterd::config::Dialect;
use clusterd::proto::wazuh_error::WazuhError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // serde_json has no size limit of its own; the decoder bounds real payloads.
    if data.len() > 1 << 20 {
        return;
    }
    let e = WazuhError::from_payload(data);
    let _ = e.to_string();
    let _ = e.message();
    let payload = e.to_payload();
    let back = WazuhError::from_payload(&payload);
    assert_eq!(back.code, e.code);
    for d in [Dialect::V4_3, Dialect::V4_14] {
        let _ = e.clone().in_dialect(d).to_payload();
    }
});
