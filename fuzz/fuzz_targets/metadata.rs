//! `files_metadata.json` of an integrity package (`clusterd::sync::metadata::parse`), in both
//! hash dialects; what parses must serialise and parse back the same.
#![no_main]

use clusterd::sync::metadata::{parse, to_json, HashKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // serde_json has no size limit of its own; packages cap metadata far above this.
    if data.len() > 1 << 20 {
        return;
    }
    for kind in [HashKind::Md5, HashKind::Blake2b512] {
        if let Ok(meta) = parse(data, kind) {
            let json = to_json(&meta, kind);
            let bytes = serde_json::to_vec(&json).expect("json");
            let again = parse(&bytes, kind).expect("own metadata parses");
            assert_eq!(to_json(&again, kind), json);
        }
    }
});
