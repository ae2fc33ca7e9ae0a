//! The daemon's command line: `-t` checks the configuration (exit 0 or 1 with a precise message),
//! `-V` prints the version, a disabled cluster exits at once, bad settings are named.

use std::path::Path;
use std::process::Command;

use clusterd::harness::{run_with_home, NodeSpec};

const DAEMON: &str = env!("CARGO_BIN_EXE_wazuh-clusterd");

/// Exit code and standard error of the daemon run on `home` (with `-r`: as the user running the
/// tests, root included).
fn run(home: &Path, args: &[&str]) -> (i32, String) {
    let mut with_root = vec!["-r"];
    with_root.extend_from_slice(args);
    let (code, _, err) = run_with_home(Path::new(DAEMON), home, &with_root);
    (code, err)
}

fn home_with(conf: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/ossec.conf"), conf).unwrap();
    dir
}

#[test]
fn test_mode_accepts_a_valid_configuration() {
    let dir = home_with(&NodeSpec::master(1516).ossec_conf());
    let (code, err) = run(dir.path(), &["-t"]);
    assert_eq!(code, 0, "{err}");
    // The report of what a start would use is on standard error, nothing else is printed.
    assert!(err.starts_with("Configuration OK: "), "{err}");
    assert!(!err.contains("ERROR") && !err.contains("WARNING"), "{err}");
    // Nothing was created: -t only reads.
    assert!(!dir.path().join("logs").exists());
}

#[test]
fn test_mode_names_what_is_wrong() {
    let good = NodeSpec::master(1516).ossec_conf();
    let cases = [
        (
            good.replace("c98b62a9b6169ac5f67dae55ae4a9088", "short"),
            "Key must be 32 characters long and only have alphanumeric characters",
        ),
        (
            good.replace("<port>1516</port>", "<port>80</port>"),
            "Port must be higher than 1024 and lower than 65535.",
        ),
        (
            good.replace("<port>1516</port>", "<port>abc</port>"),
            "Port has to be an integer.",
        ),
        (
            good.replace("<node>127.0.0.1</node>", "<node>localhost</node>"),
            "Invalid elements in node fields",
        ),
        (
            good.replace("<hidden>no</hidden>", "<hiddn>no</hiddn>"),
            "hiddn",
        ),
        (good.replace("</cluster>", ""), "ossec.conf"),
    ];
    for (conf, expected) in cases {
        let dir = home_with(&conf);
        let (code, err) = run(dir.path(), &["-t"]);
        assert_eq!(code, 1, "{conf}");
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
    }
}

#[test]
fn our_own_settings_are_validated_too() {
    let dir = home_with(&NodeSpec::master(1516).ossec_conf());
    let (code, err) = run(dir.path(), &["-t", "--wazuh-version", "3.13.0"]);
    assert_eq!(code, 1);
    assert!(err.contains("unsupported Wazuh version '3.13.0'"), "{err}");
    std::fs::write(
        dir.path().join("etc/clusterd.toml"),
        "io_drive = \"epoll\"\n",
    )
    .unwrap();
    let (code, err) = run(dir.path(), &["-t"]);
    assert_eq!(code, 1);
    assert!(err.contains("io_drive"), "{err}");
    std::fs::remove_file(dir.path().join("etc/clusterd.toml")).unwrap();
    std::fs::write(
        dir.path().join("etc/cluster.json"),
        r#"{"intervals": {"worker": {"keep_alive": -1}}}"#,
    )
    .unwrap();
    let (code, err) = run(dir.path(), &["-t"]);
    assert_eq!(code, 1);
    assert!(err.contains("intervals.worker.keep_alive"), "{err}");
}

#[test]
fn version_and_disabled_cluster() {
    let out = Command::new(DAEMON)
        .args(["-V", "--home", "/nonexistent"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("\nWazuh 4.3.11 - Wazuh Inc\n"), "{text}");
    assert!(text.contains("clusterd "), "{text}");
    let disabled = NodeSpec::master(1516)
        .ossec_conf()
        .replace("<disabled>no</disabled>", "<disabled>yes</disabled>");
    let dir = home_with(&disabled);
    let (code, err) = run(dir.path(), &["-f"]);
    assert_eq!(code, 0);
    assert!(err.contains("the cluster is disabled"), "{err}");
}
