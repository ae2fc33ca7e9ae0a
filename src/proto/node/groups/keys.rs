//! What the master knows of the agent keys each worker holds, for "keys before groups": a worker
//! whose `client.keys` lags behind the master's (it arrives with the next integrity sync) must not
//! be told about agents it cannot authenticate yet.
//!
//! The master remembers the agents of its last few `client.keys` contents by digest. When a
//! worker's integrity metadata shows a digest found there, the worker holds exactly that file, so
//! its key set is known exactly; an unknown digest (too old, or a file the worker refused to
//! replace) leaves the previous knowledge in place.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::proto::jobs::AgentKeys;

/// Contents remembered: a worker is at most a couple of integrity rounds behind.
const CONTENTS_MAX: usize = 8;

/// The master's recent `client.keys` contents.
#[derive(Default)]
pub(super) struct KeyHistory {
    /// Digest of the file in the latest snapshot (outer `None`: no snapshot yet; inner: no file).
    current: Option<Option<String>>,
    /// Digest → agents with a key, newest last.
    contents: VecDeque<(Option<String>, Arc<BTreeSet<u32>>)>,
}

impl KeyHistory {
    /// A new local-integrity snapshot: its digest and, when the file changed, its agents.
    pub(super) fn snapshot(&mut self, digest: Option<String>, agents: Option<&AgentKeys>) {
        self.current = Some(digest);
        if let Some(keys) = agents {
            self.contents.retain(|(d, _)| d != &keys.digest);
            self.contents
                .push_back((keys.digest.clone(), keys.ids.clone()));
            while self.contents.len() > CONTENTS_MAX {
                self.contents.pop_front();
            }
        }
    }

    /// The agents of the content with this digest, if remembered.
    pub(super) fn agents(&self, digest: &Option<String>) -> Option<Arc<BTreeSet<u32>>> {
        self.contents
            .iter()
            .rev()
            .find(|(d, _)| d == digest)
            .map(|(_, ids)| ids.clone())
    }

    /// Whether a worker holding `digest` holds the master's current file.
    pub(super) fn is_current(&self, digest: &Option<Option<String>>) -> bool {
        digest.is_some() && self.current.is_some() && *digest == self.current
    }
}

/// The agent keys one worker is known to hold.
#[derive(Default)]
pub(super) struct WorkerKeys {
    /// Agents whose groups may be sent (empty until the worker's metadata matched a content).
    pub(super) agents: Arc<BTreeSet<u32>>,
    /// The digest `agents` was learnt from (`None`: nothing learnt yet).
    pub(super) digest: Option<Option<String>>,
}

impl WorkerKeys {
    /// The worker's metadata shows `digest`: adopt its agents if the content is remembered.
    /// Returns whether the known set changed.
    pub(super) fn reported(&mut self, digest: Option<String>, history: &KeyHistory) -> bool {
        let Some(agents) = history.agents(&digest) else {
            return false;
        };
        let changed = self.digest.as_ref() != Some(&digest);
        self.agents = agents;
        self.digest = Some(digest);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(digest: &str, ids: &[u32]) -> AgentKeys {
        AgentKeys {
            digest: Some(digest.into()),
            ids: Arc::new(ids.iter().copied().collect()),
        }
    }

    #[test]
    fn a_worker_learns_the_set_of_a_remembered_digest_and_keeps_it_otherwise() {
        let mut history = KeyHistory::default();
        let mut worker = WorkerKeys::default();
        assert!(!worker.reported(Some("a".into()), &history));
        history.snapshot(Some("a".into()), Some(&keys("a", &[1, 2])));
        assert!(worker.reported(Some("a".into()), &history));
        assert_eq!(*worker.agents, BTreeSet::from([1, 2]));
        assert!(history.is_current(&worker.digest));
        history.snapshot(Some("b".into()), Some(&keys("b", &[1, 2, 3])));
        assert!(!history.is_current(&worker.digest));
        // A digest never seen (a file the worker kept) changes nothing.
        assert!(!worker.reported(Some("zzz".into()), &history));
        assert_eq!(*worker.agents, BTreeSet::from([1, 2]));
        assert!(worker.reported(Some("b".into()), &history));
        assert_eq!(*worker.agents, BTreeSet::from([1, 2, 3]));
    }

    #[test]
    fn only_the_latest_contents_are_remembered_and_no_file_means_no_agents() {
        let mut history = KeyHistory::default();
        history.snapshot(
            None,
            Some(&AgentKeys {
                digest: None,
                ids: Arc::default(),
            }),
        );
        assert_eq!(history.agents(&None).map(|a| a.len()), Some(0));
        for i in 0..20 {
            let d = format!("d{i}");
            history.snapshot(Some(d.clone()), Some(&keys(&d, &[i])));
        }
        assert!(history.agents(&None).is_none());
        assert!(history.agents(&Some("d11".into())).is_none());
        assert_eq!(
            history.agents(&Some("d12".into())).map(|a| a.len()),
            Some(1)
        );
    }
}
