//! `etc/client.keys` (`clusterd::store::registration::keys::KeyStore::parse`), the agents file
//! the master reads and a worker receives: parse, look up and render back.
#![no_main]

use clusterd::store::registration::keys::{parse_id, KeyStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The file is read whole; a large deployment's is a few MiB, fuzzed inputs stay below 1 MiB.
    if data.len() > 1 << 20 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    for keep_removed in [false, true] {
        let (mut store, _problems) = KeyStore::parse(&text, keep_removed);
        let rendered = store.render();
        let (again, problems) = KeyStore::parse(&rendered, keep_removed);
        assert!(problems.is_empty(), "rendered client.keys has bad lines: {problems:?}");
        assert_eq!(again.len(), store.len());
        assert_eq!(again.render(), rendered);
        let ids: Vec<u32> = store.entries().map(|e| e.number()).collect();
        for id in ids.iter().take(8) {
            assert!(store.by_id(*id).is_some());
        }
        let _ = store.allocate_id();
        if let Some(id) = ids.first() {
            let _ = store.remove(*id, !keep_removed);
        }
        let _ = store.render();
    }
    for word in text.split_whitespace().take(16) {
        let _ = parse_id(word);
    }
});
