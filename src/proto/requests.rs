//! Requests this side sent and still waits for (PROTOCOL.md §1.4). Replies are matched by counter;
//! a reply that arrives after its request timed out is recognised by a tombstone and dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Tombstones kept for timed-out requests; the oldest are forgotten first.
const TOMBSTONES_MAX: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{in_flight} requests are already waiting for a reply on this connection (limit {max})")]
pub struct TooManyRequests {
    pub in_flight: usize,
    pub max: usize,
}

struct Pending<P> {
    purpose: P,
    deadline: Instant,
}

/// What became of a received counter.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<P> {
    /// The reply to one of our requests.
    Reply(P),
    /// The late reply to a request that already timed out.
    Late,
    /// Not ours: a new request from the peer.
    NotOurs,
}

/// The in-flight table of one connection; `P` says what to do with the reply.
pub struct Requests<P> {
    pending: HashMap<u32, Pending<P>>,
    tombstones: HashSet<u32>,
    tombstone_order: VecDeque<u32>,
    max: usize,
}

impl<P> Requests<P> {
    pub fn new(max: usize) -> Requests<P> {
        Requests {
            pending: HashMap::new(),
            tombstones: HashSet::new(),
            tombstone_order: VecDeque::new(),
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// True if `counter` is free to use for a new request.
    pub fn is_free(&self, counter: u32) -> bool {
        !self.pending.contains_key(&counter) && !self.tombstones.contains(&counter)
    }

    pub fn insert(
        &mut self,
        counter: u32,
        purpose: P,
        now: Instant,
        timeout: Duration,
    ) -> Result<(), TooManyRequests> {
        if self.pending.len() >= self.max {
            return Err(TooManyRequests {
                in_flight: self.pending.len(),
                max: self.max,
            });
        }
        self.pending.insert(
            counter,
            Pending {
                purpose,
                deadline: now + timeout,
            },
        );
        Ok(())
    }

    pub fn take(&mut self, counter: u32) -> Match<P> {
        if let Some(p) = self.pending.remove(&counter) {
            return Match::Reply(p.purpose);
        }
        if self.tombstones.remove(&counter) {
            return Match::Late;
        }
        Match::NotOurs
    }

    /// Removes and returns the requests whose deadline passed, leaving tombstones.
    pub fn expire(&mut self, now: Instant) -> Vec<P> {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        let mut out = Vec::with_capacity(expired.len());
        for counter in expired {
            if let Some(p) = self.pending.remove(&counter) {
                out.push(p.purpose);
                self.bury(counter);
            }
        }
        out
    }

    /// Removes every pending request (the connection is gone).
    pub fn drain(&mut self) -> Vec<P> {
        self.pending.drain().map(|(_, p)| p.purpose).collect()
    }

    fn bury(&mut self, counter: u32) {
        if self.tombstone_order.len() >= TOMBSTONES_MAX {
            if let Some(old) = self.tombstone_order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
        self.tombstones.insert(counter);
        self.tombstone_order.push_back(counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_timeouts_and_late_replies() {
        let t0 = Instant::now();
        let mut r: Requests<&str> = Requests::new(2);
        r.insert(1, "a", t0, Duration::from_secs(5)).unwrap();
        r.insert(2, "b", t0, Duration::from_secs(1)).unwrap();
        assert!(r.insert(3, "c", t0, Duration::from_secs(1)).is_err());
        assert_eq!(r.expire(t0 + Duration::from_secs(2)), vec!["b"]);
        assert_eq!(r.take(2), Match::Late);
        assert_eq!(r.take(2), Match::NotOurs);
        assert_eq!(r.take(1), Match::Reply("a"));
        assert!(r.is_empty());
    }
}
