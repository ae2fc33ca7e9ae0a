//! Frame decoder (`clusterd::proto::decoder::Decoder`): the bytes a peer writes on the cluster
//! port, split at fuzzer-chosen points, with small limits so every limit error is reachable.
#![no_main]

use std::time::{Duration, Instant};

use clusterd::proto::decoder::{DecodeLimits, Decoder};
use fuzz_common::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let limits = DecodeLimits {
        frame_bytes_max: 1 + c.u16() as usize,
        message_bytes_max: 1 + c.u16() as usize * 4,
        divided_messages_max: 1 + (c.u8() % 8) as usize,
        payload_timeout: Duration::from_secs(30),
    };
    let mut d = Decoder::new(limits);
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut fed = 0usize;
    while !c.is_empty() {
        let n = 1 + c.u8() as usize;
        let piece = c.take(n);
        fed += piece.len();
        match d.feed(piece, t0, &mut out) {
            Ok(()) => {}
            Err(_) => return,
        }
        // What is held never exceeds what was fed, and payloads respect the limits.
        assert!(d.buffered_bytes() <= fed);
        for m in out.drain(..) {
            assert!(m.payload.len() <= limits.message_bytes_max);
            assert!(m.command.len() <= 11);
        }
    }
    let _ = d.payload_overdue(t0 + Duration::from_secs(31));
});
