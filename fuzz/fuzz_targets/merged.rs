//! Merged files (`clusterd::sync::MergedReader`), the agent-groups bundles a 4.3 peer puts in an
//! extra-valid package: every record until the end or the first error, under small limits.
#![no_main]

use clusterd::sync::{MergedLimits, MergedReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = MergedLimits {
        record_bytes_max: 64 << 10,
        total_bytes_max: 1 << 20,
        records_max: 1000,
    };
    let mut reader = MergedReader::new(data, limits);
    let mut records = 0u64;
    while let Ok(Some(record)) = reader.next_record() {
        records += 1;
        assert!(records <= limits.records_max);
        assert!(record.content.len() as u64 <= limits.record_bytes_max);
        assert!(!record.name.contains('/') && record.name != ".." && !record.name.is_empty(),
            "record name leaves its directory: {:?}", record.name);
    }
    // After the end or an error the reader yields nothing more.
    assert!(matches!(reader.next_record(), Ok(None)));
});
