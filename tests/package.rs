//! The Debian package, built with cargo-deb from the binaries this test run already built (no
//! second build): its contents and control fields, its systemd unit checked by
//! `systemd-analyze verify` on the extracted tree, and the packaged daemon run with `-t` and `-V`
//! on a temporary install root with the packaged default `clusterd.toml`; then the package
//! installed by dpkg into a root of its own (`--instdir`/`--admindir`: the machine's own dpkg
//! database and files are not touched) and the installed daemon started, serving its local socket
//! to the installed `cluster_control`. Skipped, with a line saying so, where `cargo deb` is not
//! installed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clusterd::harness::{free_port, run_with_home, Daemon, NodeSpec};

const BINARIES: [(&str, &str); 3] = [
    ("wazuh-clusterd", env!("CARGO_BIN_EXE_wazuh-clusterd")),
    ("cluster_control", env!("CARGO_BIN_EXE_cluster_control")),
    ("cluster-load", env!("CARGO_BIN_EXE_cluster-load")),
];

/// What the package must hold: path in the archive, mode as `dpkg-deb --contents` prints it.
const EXPECTED: [(&str, &str); 6] = [
    ("./usr/sbin/wazuh-clusterd", "-rwxr-xr-x"),
    ("./usr/bin/cluster_control", "-rwxr-xr-x"),
    ("./usr/bin/cluster-load", "-rwxr-xr-x"),
    ("./lib/systemd/system/clusterd.service", "-rw-r--r--"),
    ("./usr/share/clusterd/clusterd.toml", "-rw-r--r--"),
    ("./usr/share/doc/clusterd/README.md", "-rw-r--r--"),
];

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// True when `program args` runs and exits 0.
fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `command` to its end, killing it after `limit` (a hung tool fails the test instead of
/// stalling the suite).
fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `program args`, which must succeed; its standard output.
fn checked(program: &str, args: &[&str]) -> String {
    let out = run_bounded(Command::new(program).args(args), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A target directory holding this run's binaries where `cargo deb --no-build` looks for them
/// (`release/`), hard-linked when the file system allows it.
fn stage_binaries(target: &Path) {
    let release = target.join("release");
    fs::create_dir_all(&release).unwrap();
    for (name, built) in BINARIES {
        let staged = release.join(name);
        if fs::hard_link(built, &staged).is_err() {
            fs::copy(built, &staged).unwrap();
        }
    }
}

/// Builds the package into `out` and returns its path.
fn build_package(stage: &Path) -> PathBuf {
    let target = stage.join("target");
    let out = stage.join("out");
    stage_binaries(&target);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let started = Instant::now();
    let built = run_bounded(
        Command::new(cargo())
            .args([
                "deb",
                "--no-build",
                "--fast",
                "--offline",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--output")
            .arg(&out)
            .env("CARGO_TARGET_DIR", &target),
        Duration::from_secs(180),
    );
    assert!(
        built.status.success(),
        "cargo deb failed: {}{}",
        text(&built.stdout),
        text(&built.stderr)
    );
    let debs: Vec<PathBuf> = fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package expected in {}", out.display());
    println!(
        "built {} in {:.1} s",
        debs[0].display(),
        started.elapsed().as_secs_f64()
    );
    debs[0].clone()
}

fn check_contents(deb: &Path) {
    let deb_arg = deb.to_str().unwrap();
    let listing = checked("dpkg-deb", &["--contents", deb_arg]);
    println!("dpkg-deb --contents:\n{listing}");
    for (path, mode) in EXPECTED {
        let line = listing
            .lines()
            .find(|line| line.split_whitespace().last() == Some(path))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], mode, "{line}");
        assert_eq!(fields[1], "0/0", "{line}");
    }
    // The package never writes into a Wazuh install root or /etc: the stock daemon is replaced
    // by the operator, not by the package.
    for line in listing.lines() {
        let path = line.split_whitespace().last().unwrap_or("");
        assert!(
            !path.starts_with("./var/") && !path.starts_with("./etc/"),
            "unexpected path in the package: {line}"
        );
    }
    assert_eq!(
        checked("dpkg-deb", &["--field", deb_arg, "Package"]).trim(),
        "clusterd"
    );
    let depends = checked("dpkg-deb", &["--field", deb_arg, "Depends"]);
    assert!(depends.contains("libc6"), "Depends: {depends}");
    // No maintainer scripts: installing neither enables nor starts the unit, so it never runs
    // beside the daemon wazuh-control starts.
    let control = tempfile::tempdir().unwrap();
    checked(
        "dpkg-deb",
        &["--control", deb_arg, control.path().to_str().unwrap()],
    );
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert!(
            !control.path().join(script).exists(),
            "the package has a {script} script"
        );
    }
}

/// The unit as packaged: the command and the limits it promises.
fn check_unit_text(root: &Path) {
    let unit = fs::read_to_string(root.join("lib/systemd/system/clusterd.service")).unwrap();
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    for expected in [
        "ExecStart=/usr/sbin/wazuh-clusterd -f --home /var/ossec",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=full",
    ] {
        assert!(
            directives.contains(&expected),
            "{expected} missing:\n{unit}"
        );
    }
    for refused in [
        "MemoryDenyWriteExecute",
        "SystemCallFilter",
        "Conflicts",
        "User=",
    ] {
        assert!(
            !directives.iter().any(|line| line.starts_with(refused)),
            "{refused} in the unit:\n{unit}"
        );
    }
}

/// `systemd-analyze verify` on the extracted tree: the host's targets and slices are copied in so
/// the unit's default dependencies resolve, and `--root` makes ExecStart the packaged binary.
fn verify_unit(root: &Path) {
    if !works("systemd-analyze", &["--version"]) {
        println!("systemd-analyze verify skipped: systemd-analyze is not installed");
        return;
    }
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.join("sysinit.target").exists())
        .expect("the host's systemd units (sysinit.target) are not installed");
    let units = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    for entry in fs::read_dir(host_units).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if !(name_str.ends_with(".target") || name_str.ends_with(".slice")) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let link = fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(link, units.join(&name)).unwrap();
        } else if kind.is_file() {
            fs::copy(entry.path(), units.join(&name)).unwrap();
        }
    }
    let unit = root.join("lib/systemd/system/clusterd.service");
    let out = run_bounded(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg(&unit),
        Duration::from_secs(60),
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        !said.contains("clusterd.service"),
        "systemd-analyze verify warned about the unit:\n{said}"
    );
    println!("systemd-analyze verify --root: clusterd.service is valid");
}

/// The packaged daemon on a temporary install root: `-t` with the default settings file (as is,
/// and with every documented key uncommented), a bad port refused, `-V` in both dialects.
fn run_packaged_daemon(root: &Path) {
    let daemon = root.join("usr/sbin/wazuh-clusterd");
    let default_toml = fs::read_to_string(root.join("usr/share/clusterd/clusterd.toml")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let etc = home.path().join("etc");
    fs::create_dir_all(&etc).unwrap();
    let conf = NodeSpec::master(1516).ossec_conf();
    fs::write(etc.join("ossec.conf"), &conf).unwrap();

    // -r: the check must not depend on a `wazuh` user existing on this machine.
    fs::write(etc.join("clusterd.toml"), &default_toml).unwrap();
    let (code, out, err) = run_with_home(&daemon, home.path(), &["-t", "-r"]);
    assert_eq!(
        (code, out.as_str()),
        (0, ""),
        "-t with the default toml: {err}"
    );
    assert!(err.starts_with("Configuration OK: "), "{err}");
    assert!(!err.contains("WARNING"), "{err}");

    let uncommented: String = default_toml
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_key_line(rest) => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let keys = uncommented.lines().filter(|line| is_key_line(line)).count();
    assert!(keys >= 10, "documented keys: {keys}\n{uncommented}");
    fs::write(etc.join("clusterd.toml"), &uncommented).unwrap();
    let (code, out, err) = run_with_home(&daemon, home.path(), &["-t", "-r"]);
    assert_eq!(
        (code, out.as_str()),
        (0, ""),
        "-t with every documented key set:\n{uncommented}\n{err}"
    );
    assert!(!err.contains("WARNING"), "{err}");

    fs::write(
        etc.join("ossec.conf"),
        conf.replace("<port>1516</port>", "<port>80</port>"),
    )
    .unwrap();
    let (code, _, err) = run_with_home(&daemon, home.path(), &["-t", "-r"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("Port must be higher than 1024 and lower than 65535."),
        "{err}"
    );
    fs::write(etc.join("ossec.conf"), &conf).unwrap();

    fs::write(etc.join("clusterd.toml"), &default_toml).unwrap();
    let (code, out, err) = run_with_home(&daemon, home.path(), &["-V"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4.3.11") && out.contains("clusterd"), "{out}");

    let line = "# wazuh_version = \"4.3.11\"";
    assert!(default_toml.contains(line), "{default_toml}");
    fs::write(
        etc.join("clusterd.toml"),
        default_toml.replace(line, "wazuh_version = \"4.14.7\""),
    )
    .unwrap();
    let (code, out, err) = run_with_home(&daemon, home.path(), &["-V"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4.14.7"), "{out}");
    println!("packaged wazuh-clusterd: -t and -V as expected");
}

/// `dpkg -i` into a root of its own, then the installed daemon started and asked by the installed
/// `cluster_control -l`.
fn install_and_start(deb: &Path, stage: &Path) {
    let root = stage.join("installed");
    let admin = root.join("var/lib/dpkg");
    for dir in ["updates", "info", "triggers"] {
        fs::create_dir_all(admin.join(dir)).unwrap();
    }
    fs::write(admin.join("status"), "").unwrap();
    let instdir = format!("--instdir={}", root.display());
    let admindir = format!("--admindir={}", admin.display());
    let mut dpkg = Command::new("dpkg");
    dpkg.args([
        instdir.as_str(),
        admindir.as_str(),
        "--force-script-chrootless",
        "--force-not-root",
        "--force-depends",
        "--log=/dev/null",
        "-i",
    ])
    .arg(deb);
    let out = run_bounded(&mut dpkg, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "dpkg -i: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let listed = checked("dpkg-query", &[admindir.as_str(), "-W", "clusterd"]);
    assert!(listed.starts_with("clusterd\t"), "{listed}");

    let port = free_port().unwrap();
    let home = stage.join("home");
    NodeSpec::master(port).write(&home).unwrap();
    let mut daemon = Daemon::start(&root.join("usr/sbin/wazuh-clusterd"), &home, &[]).unwrap();
    assert!(
        daemon.wait_for_log("[Local Server] [Main] Serving on", Duration::from_secs(20)),
        "{}",
        daemon.log()
    );
    let (code, listing, err) = run_with_home(&root.join("usr/bin/cluster_control"), &home, &["-l"]);
    assert_eq!(code, 0, "{err}");
    assert!(listing.contains("master"), "{listing}");
    assert_eq!(daemon.stop(), Some(0));
    println!(
        "installed with dpkg into {}: the daemon starts and answers cluster_control -l",
        root.display()
    );
}

/// `key = value` with a lowercase key: a setting, not prose.
fn is_key_line(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

#[test]
fn debian_package_builds_verifies_and_runs() {
    if !works(&cargo(), &["deb", "--version"]) {
        println!("package test skipped: `cargo deb --version` does not work (cargo-deb is not installed)");
        return;
    }
    let started = Instant::now();
    let stage = tempfile::Builder::new()
        .prefix("package-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let deb = build_package(stage.path());
    check_contents(&deb);
    let root = stage.path().join("root");
    checked(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
    );
    check_unit_text(&root);
    verify_unit(&root);
    run_packaged_daemon(&root);
    install_and_start(&deb, stage.path());
    println!(
        "package test done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
