//! What the simulator tells its user: failures grouped by reason (with the first agent that failed
//! that way, so it can be looked up in the node's logs) and the final summary line.

use std::io::Write;
use std::time::Duration;

/// Distinct reasons kept; further ones are only counted, so a flood of varied errors cannot grow
/// the report without bound.
const REASONS_MAX: usize = 8;

/// Failures of one phase, grouped by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Failures {
    /// (reason, how many, first item that failed so).
    reasons: Vec<(String, usize, String)>,
    /// Failures whose reason did not fit in `reasons`.
    other: usize,
}

impl Failures {
    /// Counts one failure of `item`.
    pub fn add(&mut self, item: &str, reason: &str) {
        if let Some(entry) = self.reasons.iter_mut().find(|(r, _, _)| r == reason) {
            entry.1 += 1;
        } else if self.reasons.len() < REASONS_MAX {
            self.reasons.push((reason.to_owned(), 1, item.to_owned()));
        } else {
            self.other += 1;
        }
    }

    /// Adds the failures of another round or phase.
    pub fn merge(&mut self, other: Failures) {
        for (reason, count, item) in other.reasons {
            if let Some(entry) = self.reasons.iter_mut().find(|(r, _, _)| *r == reason) {
                entry.1 += count;
            } else if self.reasons.len() < REASONS_MAX {
                self.reasons.push((reason, count, item));
            } else {
                self.other += count;
            }
        }
        self.other += other.other;
    }

    pub fn count(&self) -> usize {
        self.reasons.iter().map(|(_, n, _)| n).sum::<usize>() + self.other
    }

    /// One line: `registration: 3 failed: 2 × <reason> (first: a-1); 1 × <reason> (first: a-7)`.
    pub fn describe(&self, what: &str) -> String {
        let mut text = format!("{what}: {} failed:", self.count());
        for (i, (reason, count, item)) in self.reasons.iter().enumerate() {
            let separator = if i == 0 { " " } else { "; " };
            text.push_str(&format!("{separator}{count} × {reason} (first: {item})"));
        }
        if self.other > 0 {
            text.push_str(&format!("; {} for other reasons", self.other));
        }
        text
    }

    /// Writes [`describe`](Self::describe) when there is anything to say.
    pub fn print(&self, what: &str, out: &mut dyn Write) -> std::io::Result<()> {
        if self.count() > 0 {
            writeln!(out, "{}", self.describe(what))?;
        }
        Ok(())
    }
}

/// The outcome of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Agents asked for.
    pub requested: usize,
    pub registered: usize,
    pub registration_failures: Failures,
    /// Agents reported connected in the node's database.
    pub connected: usize,
    pub connection_failures: Failures,
    /// Keepalives stored.
    pub keepalives: usize,
    /// Keepalives and status changes that the database refused or never answered.
    pub report_failures: Failures,
    pub elapsed: Duration,
}

impl Summary {
    pub fn new(requested: usize) -> Summary {
        Summary {
            requested,
            ..Summary::default()
        }
    }

    /// True when every agent registered, connected and had all its reports stored.
    pub fn complete(&self) -> bool {
        self.registered == self.requested
            && self.connected == self.requested
            && self.report_failures.count() == 0
    }

    /// The summary line, e.g. `summary: registered 300/300, failed 0, connected 300, keepalives 900,
    /// report failures 0, elapsed 4.21s`.
    pub fn line(&self) -> String {
        format!(
            "summary: registered {}/{}, failed {}, connected {}, keepalives {}, report failures {}, elapsed {:.2}s",
            self.registered,
            self.requested,
            self.requested - self.registered.min(self.requested),
            self.connected,
            self.keepalives,
            self.report_failures.count(),
            self.elapsed.as_secs_f64()
        )
    }

    /// The grouped failures of every phase, then the summary line.
    pub fn print(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.registration_failures.print("registration", out)?;
        self.connection_failures.print("connection", out)?;
        self.report_failures
            .print("keepalive and status reports", out)?;
        writeln!(out, "{}", self.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_group_by_reason_and_stay_bounded() {
        let mut f = Failures::default();
        f.add("a-1", "Duplicate name (error 9008)");
        f.add("a-2", "Duplicate name (error 9008)");
        f.add("a-7", "no answer within 30s");
        assert_eq!(
            f.describe("registration"),
            "registration: 3 failed: 2 × Duplicate name (error 9008) (first: a-1); \
             1 × no answer within 30s (first: a-7)"
        );
        for i in 0..100 {
            f.add(&format!("b-{i}"), &format!("reason {i}"));
        }
        assert_eq!(f.count(), 103);
        assert_eq!(f.reasons.len(), REASONS_MAX);
        assert!(f
            .describe("registration")
            .ends_with("; 94 for other reasons"));
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Failures::default();
        a.add("x-1", "r1");
        let mut b = Failures::default();
        b.add("x-2", "r1");
        b.add("x-3", "r2");
        a.merge(b);
        assert_eq!(a.count(), 3);
        assert_eq!(
            a.describe("reports"),
            "reports: 3 failed: 2 × r1 (first: x-1); 1 × r2 (first: x-3)"
        );
    }

    #[test]
    fn summary_is_complete_only_without_any_failure() {
        let mut s = Summary::new(300);
        s.registered = 300;
        s.connected = 300;
        s.keepalives = 900;
        s.elapsed = Duration::from_millis(4210);
        assert!(s.complete());
        assert_eq!(
            s.line(),
            "summary: registered 300/300, failed 0, connected 300, keepalives 900, report failures 0, elapsed 4.21s"
        );
        s.report_failures.add("a-1", "database gone");
        assert!(!s.complete());
        let mut s = Summary::new(300);
        s.registered = 299;
        s.connected = 299;
        assert!(!s.complete());
        assert!(s.line().contains("failed 1,"));
    }
}
