//! Which generation of the Wazuh cluster protocol this node speaks.
//!
//! Nodes only talk to nodes announcing the very same version, so the dialect is fixed for the life of the
//! process and chosen from the version we announce. Everything that differs between generations (hash,
//! package codec, synced items, intervals, log texts) is looked up from this value instead of being
//! duplicated.

use std::fmt;

use super::ConfigError;

/// A protocol generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Wazuh 4.3.x: MD5 metadata, ZIP packages, extra-valid `queue/agent-groups/`.
    V4_3,
    /// Wazuh 4.13.x and 4.14.x: BLAKE2b metadata, zlib packages, agent groups from wazuh-db.
    V4_14,
}

impl Dialect {
    /// Picks the dialect for a full Wazuh version such as `4.3.11` or `4.14.7`.
    ///
    /// 4.13 is accepted as the 4.14 dialect because it introduced the agent-info over HTTP that 4.14 keeps;
    /// the releases in between (4.4 to 4.12) mix features of both and are not supported.
    pub fn from_version(version: &str) -> Result<Dialect, ConfigError> {
        let unsupported = || ConfigError::UnsupportedVersion {
            version: version.to_string(),
        };
        let parts: Vec<&str> = version.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(unsupported());
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(major) || !all_digits(minor) || !all_digits(patch) {
            return Err(unsupported());
        }
        match (*major, *minor) {
            ("4", "3") => Ok(Dialect::V4_3),
            ("4", "13") | ("4", "14") => Ok(Dialect::V4_14),
            _ => Err(unsupported()),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::V4_3 => "4.3",
            Dialect::V4_14 => "4.14",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_versions_map_to_their_dialect() {
        assert_eq!(Dialect::from_version("4.3.11").unwrap(), Dialect::V4_3);
        assert_eq!(Dialect::from_version("4.3.0").unwrap(), Dialect::V4_3);
        assert_eq!(Dialect::from_version("4.13.1").unwrap(), Dialect::V4_14);
        assert_eq!(Dialect::from_version("4.14.7").unwrap(), Dialect::V4_14);
    }

    #[test]
    fn other_versions_are_refused_with_the_supported_list() {
        for bad in [
            "4.4.0", "4.12.0", "5.0.0", "4.3", "4.14", "v4.14.7", "4.14.x", "", "4.3.11.1", "4..1",
        ] {
            let err = Dialect::from_version(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("'{bad}'")), "{text}");
            assert!(text.contains("4.3.x, 4.13.x and 4.14.x"), "{text}");
        }
    }

    #[test]
    fn display_is_the_short_generation_name() {
        assert_eq!(Dialect::V4_3.to_string(), "4.3");
        assert_eq!(Dialect::V4_14.to_string(), "4.14");
    }
}
