//! The network and pool of the seeded runs: frames take a link's latency (plus jitter, in order,
//! as TCP keeps them), a partition holds a link's frames until it heals, and a misbehaving network
//! drops or duplicates single frames; pool jobs finish after a random delay, so results of
//! several jobs may come back in another order than they were asked.
//!
//! Every random choice is a hash of the run's seed and of what is decided (a link and the frame's
//! number on it, a job's number), so a seed replays exactly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;

use super::End;
use crate::proto::jobs::{Job, JobId};

/// How badly the network and the pool behave.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Faults {
    /// Frames lost, per million.
    pub drop_ppm: u64,
    /// Frames delivered twice, per million.
    pub duplicate_ppm: u64,
    /// Largest one-way latency of a link (each link draws its own).
    pub latency_max: Duration,
    /// Longest a pool job takes.
    pub job_latency_max: Duration,
}

/// What reaches an end of a link.
pub(super) enum Arrival {
    Frame(Bytes),
    /// The other end closed the connection.
    Closed,
}

/// Order of arrivals: delivery time, link, direction (from the master?), number on the link,
/// copy.
type ArrivalKey = (Duration, u64, bool, u64, u8);

/// A job a node handed to the pool: (node, the node's start count, job id, job).
pub(super) type QueuedJob = (Option<usize>, u64, JobId, Job);

/// Counts of what the network did, for the run's report.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NetStats {
    pub frames: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub jobs: u64,
}

pub(super) struct FaultyNet {
    seed: u64,
    pub faults: Faults,
    /// By delivery time, then link, direction, number on the link and copy (an order that
    /// does not depend on how a node happened to order its outputs for different links): the
    /// end, its link, what arrives.
    arrivals: BTreeMap<ArrivalKey, (End, u64, Arrival)>,
    /// By finish time, then node (`0`: master), start count and job id.
    jobs: BTreeMap<(Duration, usize, u64, JobId), QueuedJob>,
    /// Per link and direction (from the master?): frames sent and the last delivery time.
    sent: HashMap<(u64, bool), (u64, Duration)>,
    /// Workers cut off from the master until the given time.
    pub partitioned: HashMap<usize, Duration>,
    pub stats: NetStats,
}

/// A well-mixed 64-bit hash of a few numbers (splitmix64 steps).
pub(super) fn mix(values: &[u64]) -> u64 {
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
    for v in values {
        x = x.wrapping_add(*v).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    x
}

/// A fraction of `max` picked by `hash`.
fn part_of(max: Duration, hash: u64) -> Duration {
    let ms = max.as_millis() as u64;
    Duration::from_millis(if ms == 0 { 0 } else { hash % (ms + 1) })
}

impl FaultyNet {
    pub(super) fn new(seed: u64, faults: Faults) -> FaultyNet {
        FaultyNet {
            seed,
            faults,
            arrivals: BTreeMap::new(),
            jobs: BTreeMap::new(),
            sent: HashMap::new(),
            partitioned: HashMap::new(),
            stats: NetStats::default(),
        }
    }

    /// When something sent now on `link` (of `worker`) in this direction arrives: after the
    /// link's latency and some jitter, never before what was sent earlier, never during a
    /// partition.
    fn arrival_time(
        &mut self,
        link: u64,
        worker: usize,
        from_master: bool,
        now: Duration,
    ) -> Duration {
        let base = part_of(self.faults.latency_max, mix(&[self.seed, link]));
        let (count, last) = self.sent.entry((link, from_master)).or_default();
        *count += 1;
        let jitter = part_of(
            base / 2,
            mix(&[self.seed, link, from_master as u64, *count]),
        );
        let mut at = (now + base + jitter).max(*last);
        if let Some(heal) = self.partitioned.get(&worker) {
            at = at.max(*heal);
        }
        *last = at;
        at
    }

    /// Frames sent on `link` (of `worker`) towards `to`.
    pub(super) fn send(
        &mut self,
        link: u64,
        worker: usize,
        to: End,
        frames: Vec<Bytes>,
        now: Duration,
    ) {
        let from_master = matches!(to, End::Worker(..));
        for frame in frames {
            self.stats.frames += 1;
            let at = self.arrival_time(link, worker, from_master, now);
            let (count, _) = self.sent[&(link, from_master)];
            let fate = mix(&[self.seed, link, from_master as u64, count, 7]) % 1_000_000;
            if fate < self.faults.drop_ppm {
                self.stats.dropped += 1;
                continue;
            }
            let copies = if fate >= 1_000_000 - self.faults.duplicate_ppm {
                self.stats.duplicated += 1;
                2
            } else {
                1
            };
            for copy in 0..copies {
                let key = (at, link, from_master, count, copy);
                self.arrivals
                    .insert(key, (to, link, Arrival::Frame(frame.clone())));
            }
        }
    }

    /// The end at `to` hears that its peer closed `link`, after what was sent before.
    pub(super) fn close(&mut self, link: u64, worker: usize, to: End, now: Duration) {
        let from_master = matches!(to, End::Worker(..));
        let at = self.arrival_time(link, worker, from_master, now);
        let (count, _) = self.sent[&(link, from_master)];
        self.arrivals.insert(
            (at, link, from_master, count, 0),
            (to, link, Arrival::Closed),
        );
    }

    /// A job for the pool: it finishes after a random delay.
    pub(super) fn queue_job(
        &mut self,
        on: Option<usize>,
        run: u64,
        id: JobId,
        job: Job,
        now: Duration,
    ) {
        self.stats.jobs += 1;
        let node = on.map_or(0, |i| i + 1);
        let hash = mix(&[self.seed, node as u64, run, id, 3]);
        let at = now + part_of(self.faults.job_latency_max, hash);
        self.jobs.insert((at, node, run, id), (on, run, id, job));
    }

    /// What is due by `now`, in time order: arrivals and finished jobs.
    pub(super) fn due(&mut self, now: Duration) -> (Vec<(End, u64, Arrival)>, Vec<QueuedJob>) {
        let next = now + Duration::from_nanos(1);
        let later = self.arrivals.split_off(&(next, 0, false, 0, 0));
        let arrivals = std::mem::replace(&mut self.arrivals, later);
        let later = self.jobs.split_off(&(next, 0, 0, 0));
        let jobs = std::mem::replace(&mut self.jobs, later);
        (
            arrivals.into_values().collect(),
            jobs.into_values().collect(),
        )
    }

    /// Nothing is travelling and no job is running.
    pub(super) fn is_idle(&self) -> bool {
        self.arrivals.is_empty() && self.jobs.is_empty()
    }
}
