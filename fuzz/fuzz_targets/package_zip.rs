//! 4.3 integrity package (ZIP, `clusterd::sync::package::zip::unpack`) as a peer sends it:
//! unpacked into a temporary directory under small limits, which is deleted afterwards.
#![no_main]

use clusterd::sync::package::zip::unpack;
use clusterd::sync::UnpackLimits;
use fuzz_common::TempDirSink;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = UnpackLimits {
        total_bytes_max: 4 << 20,
        member_bytes_max: 1 << 20,
        metadata_bytes_max: 1 << 20,
        members_max: 256,
        window_bytes: 64 << 10,
    };
    let mut sink = TempDirSink::new();
    if let Ok(unpacked) = unpack(std::io::Cursor::new(data), &limits, &mut sink) {
        assert!(unpacked.bytes <= limits.total_bytes_max);
        assert!(unpacked.files < limits.members_max);
        assert!(unpacked.metadata.len() as u64 <= limits.metadata_bytes_max);
    }
    assert!(sink.written <= limits.total_bytes_max);
});
