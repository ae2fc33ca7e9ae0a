//! The operator's `cluster.json` override (`clusterd::config::ClusterJson::load`): only a
//! path-based loader exists, so the input is written to a temporary file and loaded over the
//! built-in table of each dialect; what loads must serialise and load back the same.
#![no_main]

use std::io::Write;

use clusterd::config::{ClusterJson, Dialect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // serde_json has no size limit of its own; real files are a few KiB.
    if data.len() > 256 << 10 {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("clusterd-fuzz-")
        .tempdir_in(std::env::var_os("FUZZ_TMPDIR").map_or_else(std::env::temp_dir, Into::into))
        .expect("temporary directory");
    let path = dir.path().join("cluster.json");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("write cluster.json");
    for dialect in [Dialect::V4_3, Dialect::V4_14] {
        if let Ok(table) = ClusterJson::load(dialect, &path) {
            let json = table.to_json();
            let again = dir.path().join("again.json");
            std::fs::write(&again, serde_json::to_vec(&json).expect("json")).expect("write");
            let reloaded = ClusterJson::load(dialect, &again).expect("own table loads");
            assert_eq!(reloaded.to_json(), json);
        }
    }
});
