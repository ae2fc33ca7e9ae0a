//! A `clusterd::proto::node::Node` (master or worker, first byte) with one client on the local
//! socket (`accept_local`, plaintext frames); the fuzzer's operations play that client: get_nodes,
//! get_health, DAPI, sendsync, send_file and the rest, with replies, raw bytes, time, failed jobs
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
    let mut driver = Driver::new(Role::Local { master: first & 2 == 0 }, dialect);
    driver.run(rest);
});
