//! A master `clusterd::proto::node::Node` and one worker connection accepted with
//! `accept_cluster`, past a valid encrypted `hello`; the fuzzer's operations then play that
//! worker: requests of every command (integrity, agent-info, agent-groups, sendsync, DAPI, file
//! and string protocols), replies to the master's own requests, raw bytes, time, failed jobs and
//! chunk reads. Reaches the master's payload parsers (hello, agent-info results, agent-groups
//! reports, sendsync, DAPI).
//! The first byte picks the dialect (4.3 or 4.14). Inputs are bounded by the driver: at most 256
//! operations of at most 64 KiB each, and small connection limits.
#![no_main]

use clusterd::config::Dialect;
use fuzz_common::{Driver, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let dialect = if first & 1 == 0 { Dialect::V4_14 } else { Dialect::V4_3 };
    let mut driver = Driver::new(Role::Worker, dialect);
    driver.run(rest);
});
