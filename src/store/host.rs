//! What this host says about itself: its name, its kernel (`uname`) and its distribution
//! (`os-release`). The manager's own row in the agent database (agent 000) and authd's name checks
//! are made of these, as a full manager's daemons make them.

use std::fs;

/// This host's name, `None` when the kernel does not say.
pub fn name() -> Option<String> {
    let name = nix::sys::utsname::uname().ok()?;
    let name = name.nodename().to_string_lossy().trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// The kernel's `uname` fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kernel {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

impl Kernel {
    pub fn of_this_host() -> Option<Kernel> {
        let u = nix::sys::utsname::uname().ok()?;
        let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
        Some(Kernel {
            sysname: text(u.sysname()),
            nodename: text(u.nodename()),
            release: text(u.release()),
            version: text(u.version()),
            machine: text(u.machine()),
        })
    }

    /// The agent database's `os_uname`: the fields joined with ` |`, as Wazuh stores them.
    pub fn os_uname(&self) -> String {
        [
            &self.sysname,
            &self.nodename,
            &self.release,
            &self.version,
            &self.machine,
        ]
        .map(String::as_str)
        .join(" |")
    }

    /// The architecture names Wazuh recognises in a `uname` (`None` for others).
    pub fn arch(&self) -> Option<&'static str> {
        const ARCHS: [&str; 12] = [
            "x86_64", "i386", "i686", "sparc", "amd64", "i86pc", "ia64", "AIX", "armv6", "armv7",
            "aarch64", "arm64",
        ];
        ARCHS.into_iter().find(|a| self.machine.contains(a))
    }
}

/// The distribution, from `/etc/os-release` (or `/usr/lib/os-release`), split as the agent
/// database holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Distribution {
    /// `NAME`.
    pub name: String,
    /// `ID`.
    pub platform: String,
    /// `VERSION` (else `VERSION_ID`) without its `(codename)`.
    pub version: String,
    pub codename: Option<String>,
    /// Leading number of the version.
    pub major: Option<String>,
    /// The number after the first dot (`22.04` → `04`), or a service pack (`15-SP7` → `7`).
    pub minor: Option<String>,
}

impl Distribution {
    pub fn of_this_host() -> Option<Distribution> {
        ["/etc/os-release", "/usr/lib/os-release"]
            .into_iter()
            .find_map(|path| fs::read_to_string(path).ok())
            .and_then(|text| Distribution::parse(&text))
    }

    /// Reads an `os-release` text; `None` without a `NAME` or an `ID`. The first of each key wins.
    pub fn parse(text: &str) -> Option<Distribution> {
        let value = |key: &str| {
            text.lines()
                .filter_map(|line| line.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| unquote(v.trim()).to_owned())
        };
        let name = value("NAME")?;
        let platform = value("ID")?;
        let full = value("VERSION")
            .or_else(|| value("VERSION_ID"))
            .unwrap_or_default();
        let (version, codename) = match full.split_once(" (") {
            Some((version, rest)) => (
                version.to_owned(),
                Some(rest.trim_end_matches(')').to_owned()),
            ),
            None => (full.clone(), None),
        };
        let (major, minor) = version_numbers(&version);
        Some(Distribution {
            name,
            platform,
            version,
            codename,
            major,
            minor,
        })
    }
}

fn unquote(value: &str) -> &str {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('"') || quoted('\'') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// Major and minor numbers of a version text such as `22.04.4 LTS` or `15-SP7`.
fn version_numbers(version: &str) -> (Option<String>, Option<String>) {
    let digits = |s: &str| -> Option<String> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        (!d.is_empty()).then_some(d)
    };
    let Some(major) = digits(version) else {
        return (None, None);
    };
    let rest = &version[major.len()..];
    let minor = if let Some(after_dot) = rest.strip_prefix('.') {
        digits(after_dot)
    } else {
        let lower = rest.to_ascii_lowercase();
        lower.strip_prefix("-sp").and_then(digits)
    };
    (Some(major), minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ubuntu_os_release_splits_version_and_codename() {
        let text = "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n\
                    VERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n";
        let d = Distribution::parse(text).expect("parsed");
        assert_eq!(d.name, "Ubuntu");
        assert_eq!(d.platform, "ubuntu");
        assert_eq!(d.version, "22.04.4 LTS");
        assert_eq!(d.codename.as_deref(), Some("Jammy Jellyfish"));
        assert_eq!(d.major.as_deref(), Some("22"));
        assert_eq!(d.minor.as_deref(), Some("04"));
    }

    #[test]
    fn version_id_stands_in_and_service_packs_are_minors() {
        let d = Distribution::parse("NAME='SLES'\nVERSION_ID=\"15-SP7\"\nID=\"sles\"\n")
            .expect("parsed");
        assert_eq!(d.version, "15-SP7");
        assert_eq!(d.codename, None);
        assert_eq!(d.major.as_deref(), Some("15"));
        assert_eq!(d.minor.as_deref(), Some("7"));
        let arch = Distribution::parse("NAME=\"Arch Linux\"\nID=arch\n").expect("parsed");
        assert_eq!(arch.version, "");
        assert_eq!((arch.major, arch.minor), (None, None));
        assert_eq!(Distribution::parse("ID=x\n"), None, "no NAME");
    }

    #[test]
    fn kernel_fields_join_and_name_the_arch() {
        let k = Kernel {
            sysname: "Linux".into(),
            nodename: "m1".into(),
            release: "6.1.0".into(),
            version: "#1 SMP".into(),
            machine: "aarch64".into(),
        };
        assert_eq!(k.os_uname(), "Linux |m1 |6.1.0 |#1 SMP |aarch64");
        assert_eq!(k.arch(), Some("aarch64"));
        let odd = Kernel {
            machine: "riscv64".into(),
            ..k
        };
        assert_eq!(odd.arch(), None);
        assert!(Kernel::of_this_host().is_some());
        assert!(name().is_some());
    }
}
