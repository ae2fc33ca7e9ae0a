//! Distributed-API envelopes (`clusterd::proto::dapi::request::DapiRequest::parse`) as a local
//! client or a peer sends them, then what the node does with a parsed one: the allow list
//! (`classify`), the forwarded share and re-encoding; plus the best-effort name readers used in
//! refusal logs.
#![no_main]

use clusterd::proto::dapi::request::{callable_path, function_name, DapiRequest};
use clusterd::proto::dapi::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = function_name(data);
    let _ = callable_path(data);
    if let Ok(request) = DapiRequest::parse(data) {
        let _ = classify(&request.f);
        let _ = request.f.path();
        let _ = request.kwargs();
        let agents = vec!["001".to_string(), "002".to_string()];
        let share = request.forwarded(Some(&agents));
        assert!(DapiRequest::parse(&share).is_ok(), "a forwarded share must parse");
        let _ = request.forwarded(None);
        let again = DapiRequest::parse(&request.to_bytes()).expect("re-encoded request parses");
        assert_eq!(again.request_type, request.request_type);
    }
});
