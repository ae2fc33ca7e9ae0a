//! `etc/internal_options.conf` and `etc/local_internal_options.conf`: the manager's `name.option=value`
//! files. The cluster daemon reads one option there, `wazuh_clusterd.debug` (0 to 2), the log level
//! operators raise when troubleshooting. As on a stock manager the local file wins: an upgrade
//! rewrites `internal_options.conf`, never `local_internal_options.conf`.

use std::path::{Path, PathBuf};

/// The shipped file, relative to the install root.
pub const INTERNAL_OPTIONS: &str = "etc/internal_options.conf";
/// The operator's file, relative to the install root.
pub const LOCAL_INTERNAL_OPTIONS: &str = "etc/local_internal_options.conf";

/// The option the cluster daemon reads.
const DEBUG_OPTION: &str = "wazuh_clusterd.debug";

/// The debug level the files set and the file that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugOption {
    pub level: u8,
    pub file: PathBuf,
}

/// `wazuh_clusterd.debug` of the install root: `Ok(None)` when neither file sets it, `Err` (a
/// warning to log; the level is then 0) when the value is not 0, 1 or 2.
pub fn debug_option(home: &Path) -> Result<Option<DebugOption>, String> {
    for rel in [LOCAL_INTERNAL_OPTIONS, INTERNAL_OPTIONS] {
        let file = home.join(rel);
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Some(value) = option(&text, DEBUG_OPTION) else {
            continue;
        };
        return match value.parse::<u8>() {
            Ok(level) if level <= 2 && value.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Some(DebugOption { level, file }))
            }
            _ => Err(format!(
                "{DEBUG_OPTION} in {} must be 0, 1 or 2 (found '{value}'): using 0.",
                file.display()
            )),
        };
    }
    Ok(None)
}

/// The last value of `name` in an options file (`name=value` or `name: value` lines, names in any
/// case, `#` and `;` comments), as the manager's readers take it.
fn option<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| {
            let at = line.find(['=', ':'])?;
            let (key, value) = (line[..at].trim(), line[at + 1..].trim());
            key.eq_ignore_ascii_case(name).then_some(value)
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(internal: Option<&str>, local: Option<&str>) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("etc")).unwrap();
        if let Some(text) = internal {
            std::fs::write(home.path().join(INTERNAL_OPTIONS), text).unwrap();
        }
        if let Some(text) = local {
            std::fs::write(home.path().join(LOCAL_INTERNAL_OPTIONS), text).unwrap();
        }
        home
    }

    #[test]
    fn the_local_file_wins_and_comments_are_skipped() {
        let shipped =
            "# Cluster daemon\n#wazuh_clusterd.debug=2\nwazuh_clusterd.debug=1\nremoted.debug=2\n";
        let h = home(Some(shipped), None);
        let found = debug_option(h.path()).unwrap().unwrap();
        assert_eq!(found.level, 1);
        assert_eq!(found.file, h.path().join(INTERNAL_OPTIONS));

        let h = home(Some(shipped), Some("wazuh_clusterd.debug = 2\n"));
        let found = debug_option(h.path()).unwrap().unwrap();
        assert_eq!(found.level, 2);
        assert_eq!(found.file, h.path().join(LOCAL_INTERNAL_OPTIONS));

        // A local file without the option leaves the shipped one in force.
        let h = home(Some(shipped), Some("analysisd.debug=2\n"));
        assert_eq!(debug_option(h.path()).unwrap().unwrap().level, 1);
    }

    #[test]
    fn missing_and_bad_values() {
        assert_eq!(debug_option(home(None, None).path()), Ok(None));
        for bad in ["3", "-1", "one", ""] {
            let h = home(Some(&format!("wazuh_clusterd.debug={bad}\n")), None);
            let err = debug_option(h.path()).unwrap_err();
            assert!(err.contains("must be 0, 1 or 2"), "{err}");
        }
    }
}
