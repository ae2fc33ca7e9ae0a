//! `ossec.conf` (`clusterd::config::ClusterConfig::parse`): the `<cluster>` section of the XML
//! file the daemon reads at start, and the `get_config` JSON built from what parses.
#![no_main]

use clusterd::config::ClusterConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // roxmltree parses the whole text at once and has no size limit; real files are a few KiB.
    if data.len() > 256 << 10 {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok((config, _warnings)) = ClusterConfig::parse(text) {
        let _ = config.get_config_json();
        let _ = config.master_address();
    }
});
