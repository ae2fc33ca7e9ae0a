//! The node's scratch ledger: every file in `queue/cluster/` that a task of this node holds (a
//! received package a job opens, a package a job builds, a package on its way to a peer), with the
//! connection it belongs to. A file leaves the ledger only by being deleted: when its task ends,
//! when its job finishes without a flow taking the result, or when its connection closes. Files
//! still being received are held by their connection's receive table
//! ([`crate::proto::files::IncomingFiles`]) until a task takes them over; between the two, nothing
//! in `queue/cluster/` is left without a holder.

use std::collections::HashMap;

use super::{ConnId, Output};
use crate::proto::jobs::JobId;

/// What holds a scratch file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A job reads or writes it; when the job ends the file goes, unless a flow took it
    /// ([`Scratch::hold`] with another holder) while handling the result.
    Job(JobId),
    /// A package being sent (or about to be) on its connection.
    Sending,
}

#[derive(Debug)]
struct Entry {
    conn: ConnId,
    holder: Holder,
}

/// The ledger (one per node).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    files: HashMap<String, Entry>,
    /// The files each running job was given, so a job's end looks at its own files only.
    by_job: HashMap<JobId, Vec<String>>,
}

impl Scratch {
    /// `rel` belongs to `conn` and is held by `holder` (replacing its previous holder).
    pub(super) fn hold(&mut self, rel: &str, conn: ConnId, holder: Holder) {
        if let Holder::Job(id) = holder {
            self.by_job.entry(id).or_default().push(rel.to_string());
        }
        self.files.insert(rel.to_string(), Entry { conn, holder });
    }

    /// `rel`'s task is over: delete it.
    pub(super) fn release(&mut self, rel: &str, outputs: &mut Vec<Output>) {
        self.files.remove(rel);
        outputs.push(Output::RemoveFile {
            rel: rel.to_string(),
        });
    }

    /// Job `id` ended (its result already handled): delete what it still holds. Inputs a job
    /// consumes are gone already (deleting them again is harmless); outputs no flow took would be
    /// left behind otherwise.
    pub(super) fn job_finished(&mut self, id: JobId, outputs: &mut Vec<Output>) {
        for rel in self.by_job.remove(&id).unwrap_or_default() {
            if self
                .files
                .get(&rel)
                .is_some_and(|e| e.holder == Holder::Job(id))
            {
                self.release(&rel, outputs);
            }
        }
    }

    /// `conn` closed: packages waiting for it are deleted now; files its jobs hold go when those
    /// jobs end (no flow of a gone connection takes them).
    pub(super) fn conn_closed(&mut self, conn: ConnId, outputs: &mut Vec<Output>) {
        let sending: Vec<String> = self
            .files
            .iter()
            .filter(|(_, e)| e.conn == conn && e.holder == Holder::Sending)
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in sending {
            self.release(&rel, outputs);
        }
    }

    /// Files held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(outputs: &[Output]) -> Vec<&str> {
        let mut rels: Vec<&str> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::RemoveFile { rel } => Some(rel.as_str()),
                _ => None,
            })
            .collect();
        rels.sort();
        rels
    }

    #[test]
    fn a_job_result_no_flow_takes_is_deleted_and_a_taken_one_waits_for_its_send() {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        s.hold("queue/cluster/w1/in.zip", 1, Holder::Job(7));
        s.hold("queue/cluster/w1/out.zip", 1, Holder::Job(7));
        s.hold("queue/cluster/w1/out.zip", 1, Holder::Sending);
        s.job_finished(7, &mut out);
        assert_eq!(removed(&out), ["queue/cluster/w1/in.zip"]);
        assert_eq!(s.len(), 1);
        s.release("queue/cluster/w1/out.zip", &mut out);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_closed_connection_drops_its_sends_at_once_and_its_jobs_results_later() {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        s.hold("queue/cluster/w1/sending.zip", 1, Holder::Sending);
        s.hold("queue/cluster/w1/building.zip", 1, Holder::Job(9));
        s.hold("queue/cluster/w2/sending.zip", 2, Holder::Sending);
        s.conn_closed(1, &mut out);
        assert_eq!(removed(&out), ["queue/cluster/w1/sending.zip"]);
        out.clear();
        s.job_finished(9, &mut out);
        assert_eq!(removed(&out), ["queue/cluster/w1/building.zip"]);
        assert_eq!(s.len(), 1);
    }
}
