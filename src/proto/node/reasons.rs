//! Refusal reasons in plain words. The master puts them in the error's `extra_message`, so stock workers
//! print them too; our worker adds them itself when a stock master sends none.

/// Worker names the master accepts: they become directory names under `queue/cluster/`.
pub(super) fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The master's words for refusing a `hello`.
pub(super) fn master_side(
    code: u32,
    name: &str,
    their_cluster: &str,
    our_cluster: &str,
    their_version: &str,
    our_version: &str,
) -> String {
    match code {
        3028 => format!("a node named {name} is already connected"),
        3029 => format!("{name} is the master's own node name"),
        3030 => format!(
            "the worker belongs to cluster '{their_cluster}' but the master to '{our_cluster}'"
        ),
        3031 => format!(
            "the worker announced version {their_version} but the master runs {our_version}"
        ),
        3060 => format!("node name '{name}' may only contain letters, digits, '_' and '-'"),
        _ => String::new(),
    }
}

/// The worker's words when the master's refusal carries none.
pub(super) fn worker_side(
    code: u32,
    node_name: &str,
    cluster_name: &str,
    version: &str,
) -> Option<String> {
    Some(match code {
        3028 => format!("a node named {node_name} is already connected"),
        3029 => format!("{node_name} is the master's own node name"),
        3030 => format!("the master does not belong to cluster '{cluster_name}'"),
        3031 => format!("the master does not run version {version}"),
        3060 => format!("node name '{node_name}' may only contain letters, digits, '_' and '-'"),
        _ => return None,
    })
}

/// Why the master may drop a connection without answering `hello`.
pub(super) const SILENT_REFUSAL: &str =
    "the master closed the connection without answering hello: the cluster key does not match the master's \
     (or the master refused the connection)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert!(valid_node_name("worker-1_a"));
        assert!(!valid_node_name("../etc"));
        assert!(!valid_node_name("w 1"));
        assert!(!valid_node_name(""));
    }
}
