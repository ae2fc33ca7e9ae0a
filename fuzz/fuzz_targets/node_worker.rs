//! A worker `clusterd::proto::node::Node` connected to its master, whose `hello` reply was valid;
//! the fuzzer's operations then play that master: requests (agent-groups sends, integrity replies,
//! DAPI shares, sendsync results), replies to the worker's requests, raw bytes, time, failed jobs
//! and chunk reads.
//! The first byte picks the dialect (4.3 or 4.14). Inputs are bounded by the driver: at most 256
//! operations of at most 64 KiB each, and small connection limits.
#![no_main]

use clusterd::config::Dialect;
use fuzz_common::{Driver, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let dialect = if first & 1 == 0 { Dialect::V4_14 } else { Dialect::V4_3 };
    let mut driver = Driver::new(Role::Master, dialect);
    driver.run(rest);
});
