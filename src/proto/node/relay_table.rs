//! The requests a worker relayed to its master for its local clients (sendsync, DAPI) and still
//! waits an answer for. Answers name only the local client, so each client's requests are
//! answered in the order they were relayed.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::ConnId;

/// A worker's relayed requests that wait for the master's answer, by local client.
#[derive(Default)]
pub(super) struct RelayTable {
    /// By local client id.
    waiting: HashMap<u32, Waiting>,
    /// Requests waiting, over all clients.
    pub(super) total: usize,
    pub(super) next_sweep: Option<Instant>,
}

/// One local client's requests waiting for the master.
struct Waiting {
    local: ConnId,
    /// When each request was relayed, oldest first (answers carry no request id, only the client's).
    sent: VecDeque<Instant>,
}

impl RelayTable {
    pub(super) fn add(&mut self, client: u32, local: ConnId, now: Instant) {
        let waiting = self.waiting.entry(client).or_insert_with(|| Waiting {
            local,
            sent: VecDeque::new(),
        });
        if waiting.local != local {
            // The id belonged to a client that left; its requests are no longer anyone's.
            self.total -= waiting.sent.len();
            waiting.sent.clear();
            waiting.local = local;
        }
        waiting.sent.push_back(now);
        self.total += 1;
    }

    /// One of `client`'s requests is answered: the connection the answer goes to.
    pub(super) fn answered(&mut self, client: u32) -> Option<ConnId> {
        let waiting = self.waiting.get_mut(&client)?;
        waiting.sent.pop_front()?;
        self.total -= 1;
        let local = waiting.local;
        if waiting.sent.is_empty() {
            self.waiting.remove(&client);
        }
        Some(local)
    }

    /// Local client `client` on `local` disconnected: its answers have nowhere to go.
    pub(super) fn forget(&mut self, client: u32, local: ConnId) {
        if self.waiting.get(&client).is_some_and(|w| w.local == local) {
            if let Some(waiting) = self.waiting.remove(&client) {
                self.total -= waiting.sent.len();
            }
        }
    }

    /// Every waiting request, once per request, emptying the table.
    pub(super) fn drain(&mut self) -> Vec<ConnId> {
        self.total = 0;
        self.waiting
            .drain()
            .flat_map(|(_, w)| std::iter::repeat_n(w.local, w.sent.len()))
            .collect()
    }

    /// Requests relayed before `limit`, removed, once per request.
    pub(super) fn expired(&mut self, limit: Instant) -> Vec<ConnId> {
        let mut expired = Vec::new();
        for waiting in self.waiting.values_mut() {
            while waiting.sent.front().is_some_and(|sent| *sent < limit) {
                waiting.sent.pop_front();
                expired.push(waiting.local);
            }
        }
        self.total -= expired.len();
        self.waiting.retain(|_, w| !w.sent.is_empty());
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waiting_requests_are_counted_per_client_and_forgotten_with_it() {
        let t0 = Instant::now();
        let mut w = RelayTable::default();
        w.add(7, 1, t0);
        w.add(7, 1, t0 + Duration::from_secs(1));
        w.add(8, 2, t0 + Duration::from_secs(2));
        assert_eq!(w.total, 3);
        assert_eq!(w.answered(7), Some(1));
        assert_eq!(
            w.expired(t0 + Duration::from_millis(500)),
            Vec::<ConnId>::new()
        );
        assert_eq!(w.expired(t0 + Duration::from_millis(1500)), vec![1]);
        assert_eq!(w.total, 1);
        w.forget(8, 99);
        assert_eq!(w.total, 1, "another connection's id is not forgotten");
        // The id is reused by a new connection: the old requests are no longer anyone's.
        w.add(8, 3, t0);
        assert_eq!(w.total, 1);
        assert_eq!(w.drain(), vec![3]);
        assert_eq!((w.total, w.answered(8)), (0, None));
    }
}
