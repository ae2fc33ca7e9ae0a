//! The file protocol against a real daemon, over its local socket: a multi-chunk transfer lands byte
//! for byte; paths outside `queue/cluster/` and bad digests are refused with the stock answers.

use std::path::Path;
use std::time::Duration;

use clusterd::control::client::{ControlError, LocalClient};
use clusterd::harness::{free_port, wait_until, Daemon, NodeSpec};
use clusterd::proto::frame::REQUEST_CHUNK_BYTES;
use sha2::{Digest, Sha256};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

fn start_master(root: &Path) -> Daemon {
    let home = root.join("master");
    NodeSpec::master(free_port().unwrap()).write(&home).unwrap();
    let d = Daemon::start(Path::new(DAEMON), &home, &["--io-driver", "auto"]).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || home
            .join("queue/cluster/c-internal.sock")
            .exists()),
        "{}",
        d.log()
    );
    d
}

fn with_path(path: &str, data: &[u8]) -> Vec<u8> {
    let mut v = format!("{path} ").into_bytes();
    v.extend_from_slice(data);
    v
}

fn refused(result: Result<Vec<u8>, ControlError>) -> String {
    match result {
        Err(ControlError::Remote(e)) => e.extra.unwrap_or_default(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_file_arrives_byte_for_byte_and_bad_transfers_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let master = start_master(root.path());
    let mut client = LocalClient::connect(&master.home, Duration::from_secs(20)).unwrap();

    // 12 MiB in stock-sized chunks: each file_upd plaintext is exactly the frame chunk size.
    let path = "/queue/cluster/package.bin";
    let content: Vec<u8> = (0..12 * 1024 * 1024).map(|i| (i * 7 % 253) as u8).collect();
    assert_eq!(
        client.call("new_file", path.as_bytes()).unwrap(),
        b"Ready to receive new file"
    );
    for chunk in content.chunks(REQUEST_CHUNK_BYTES - path.len() - 1) {
        assert_eq!(
            client.call("file_upd", &with_path(path, chunk)).unwrap(),
            b"File updated"
        );
    }
    let digest = Sha256::digest(&content);
    assert_eq!(
        client.call("file_end", &with_path(path, &digest)).unwrap(),
        b"File received correctly"
    );
    assert_eq!(
        std::fs::read(master.home.join("queue/cluster/package.bin")).unwrap(),
        content
    );

    // A wrong digest is reported (the bytes are on disk, but the transfer is not trusted).
    client.call("new_file", b"/queue/cluster/bad.bin").unwrap();
    client
        .call("file_upd", &with_path("/queue/cluster/bad.bin", b"abc"))
        .unwrap();
    let answer = refused(client.call("file_end", &with_path("/queue/cluster/bad.bin", &[0u8; 32])));
    assert_eq!(
        answer,
        "File wasn't correctly received. Checksums aren't equal."
    );

    // Paths that leave queue/cluster/ are refused and nothing is written.
    for bad in [
        "/etc/client.keys",
        "/queue/cluster/../../escape",
        "/queue/cluster/../cluster-x",
    ] {
        assert_eq!(
            refused(client.call("new_file", bad.as_bytes())),
            "Write path not allowed",
            "{bad}"
        );
    }
    assert!(!master.home.join("etc/client.keys").exists());
    assert!(!root.path().join("escape").exists());
    assert!(!master.home.join("queue/cluster-x").exists());

    // A file_upd for a transfer never opened is an error, not a write.
    let answer = refused(client.call("file_upd", &with_path("/queue/cluster/never.bin", b"x")));
    assert!(
        answer.contains("no file queue/cluster/never.bin is being received"),
        "{answer}"
    );
    assert!(!master.home.join("queue/cluster/never.bin").exists());
}
