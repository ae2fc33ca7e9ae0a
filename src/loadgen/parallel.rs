//! The threads a phase runs on: items handed out one at a time from a shared index, one state per
//! thread (its own connection), progress printed by the calling thread, and a stop when the node
//! keeps failing.
//!
//! Stopping matters because every failure may cost seconds (a registration is retried for up to ten
//! seconds, a request may wait its whole timeout): when the node is down or refuses everything,
//! carrying on would take hours and tell nothing more than the first failures already did.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::report::Failures;
use super::LoadError;

/// Time between two progress lines.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How often the calling thread looks at the counters.
const POLL: Duration = Duration::from_millis(50);

/// Counters shared by the threads of one phase.
pub struct Tally {
    succeeded: AtomicUsize,
    failed: AtomicUsize,
    /// Failures since the last success, across all threads.
    consecutive: AtomicUsize,
    consecutive_max: usize,
    stop: AtomicBool,
    failures: Mutex<Failures>,
}

impl Tally {
    /// A tally that asks the threads to stop after `consecutive_max` failures in a row.
    pub fn new(consecutive_max: usize) -> Tally {
        Tally {
            succeeded: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            consecutive: AtomicUsize::new(0),
            consecutive_max: consecutive_max.max(1),
            stop: AtomicBool::new(false),
            failures: Mutex::new(Failures::default()),
        }
    }

    pub fn succeeded(&self) -> usize {
        self.succeeded.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// True once the phase was told to stop; threads finish their current item and take no more.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn success(&self) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// Records that `item` failed for `reason` (a text shared by items failing the same way).
    pub fn failure(&self, item: &str, reason: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.lock_failures().add(item, reason);
        if self.consecutive.fetch_add(1, Ordering::Relaxed) + 1 >= self.consecutive_max {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        // A thread that panicked mid-record leaves at worst one count behind.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take_failures(&self) -> Failures {
        std::mem::take(&mut *self.lock_failures())
    }
}

/// Failures in a row after which a phase on `threads` threads stops: every thread failed on its
/// current item with no success in between, so the node, not one agent, is at fault. At least ten,
/// so that a single connection still gets a few chances.
pub fn failures_in_a_row_max(threads: usize) -> usize {
    threads.max(10)
}

/// What one item came to.
pub enum Outcome<R> {
    Done(R),
    /// Failed; the reason groups it with the others that failed the same way.
    Failed(String),
}

/// What a phase produced: the results of the items that succeeded, in item order, and the failures.
pub struct PhaseResult<R> {
    pub results: Vec<R>,
    pub failures: Failures,
}

/// Makes a progress line from the counters and the time elapsed.
pub type ProgressLine<'a> = &'a dyn Fn(&Tally, Duration) -> String;

/// How a phase is run and shown.
pub struct Phase<'a> {
    pub threads: usize,
    /// Failures in a row after which the phase stops (the items not started count as failed).
    pub consecutive_failures_max: usize,
    /// Prints a progress line from the counters (successes, failures, elapsed); `None`: no lines.
    pub progress: Option<ProgressLine<'a>>,
}

/// Runs `work` on every item on `phase.threads` threads, each with its own state from `init`.
/// `name` names an item in failure reports.
pub fn run<T, S, R>(
    phase: &Phase,
    items: &[T],
    name: impl Fn(&T) -> String + Sync,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T, &Tally) -> Outcome<R> + Sync,
    out: &mut dyn Write,
) -> Result<PhaseResult<R>, LoadError>
where
    T: Sync,
    R: Send,
{
    let tally = Tally::new(phase.consecutive_failures_max);
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let threads = phase.threads.clamp(1, items.len().max(1));
    let started = Instant::now();
    let mut per_thread: Vec<Vec<(usize, R)>> = Vec::with_capacity(threads);
    let mut printed = Ok(());
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (tally, next, finished) = (&tally, &next, &finished);
                let (init, work, name) = (&init, &work, &name);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    let mut state = init();
                    while !tally.stopping() {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            break;
                        };
                        match work(&mut state, item, tally) {
                            Outcome::Done(result) => {
                                tally.success();
                                done.push((index, result));
                            }
                            Outcome::Failed(reason) => tally.failure(&name(item), &reason),
                        }
                    }
                    finished.fetch_add(1, Ordering::Relaxed);
                    done
                })
            })
            .collect();
        let mut last_line = Instant::now();
        while finished.load(Ordering::Relaxed) < threads {
            thread::sleep(POLL);
            if let Some(progress) = phase.progress {
                if last_line.elapsed() >= PROGRESS_EVERY && printed.is_ok() {
                    last_line = Instant::now();
                    printed = writeln!(out, "{}", progress(&tally, started.elapsed()));
                }
            }
        }
        for handle in handles {
            // A panicking item is a bug of this tool; its thread's results are lost, and counted.
            match handle.join() {
                Ok(done) => per_thread.push(done),
                Err(_) => tally.failure("(a simulator thread)", "the thread panicked"),
            }
        }
    });
    let taken = next.load(Ordering::Relaxed).min(items.len());
    if tally.stopping() && taken < items.len() {
        let reason = format!(
            "not attempted: stopped after {} failures in a row",
            tally.consecutive_max
        );
        for item in &items[taken..] {
            tally.lock_failures().add(&name(item), &reason);
            tally.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(progress) = phase.progress {
        printed = printed.and_then(|()| writeln!(out, "{}", progress(&tally, started.elapsed())));
    }
    printed?;
    let mut results: Vec<(usize, R)> = per_thread.into_iter().flatten().collect();
    results.sort_unstable_by_key(|(index, _)| *index);
    Ok(PhaseResult {
        results: results.into_iter().map(|(_, r)| r).collect(),
        failures: tally.take_failures(),
    })
}

/// The progress line of a phase: `<done> <n>/<total> agents (<rate>)[, <k> failed]`.
pub fn progress_text(done: &str, total: usize, tally: &Tally, elapsed: Duration) -> String {
    let mut text = format!(
        "{done} {}/{total} agents ({})",
        tally.succeeded(),
        rate(tally.succeeded(), elapsed)
    );
    if tally.failed() > 0 {
        text.push_str(&format!(", {} failed", tally.failed()));
    }
    text
}

/// `1234.5/s`: successes per second so far.
pub fn rate(count: usize, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return "-/s".into();
    }
    format!("{:.1}/s", count as f64 / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(threads: usize, consecutive: usize) -> Phase<'static> {
        Phase {
            threads,
            consecutive_failures_max: consecutive,
            progress: None,
        }
    }

    #[test]
    fn every_item_is_done_once_and_results_keep_item_order() {
        let items: Vec<usize> = (0..1000).collect();
        let result = run(
            &quiet(8, 10),
            &items,
            |i| i.to_string(),
            || 0usize,
            |seen, item, _| {
                *seen += 1;
                Outcome::Done(*item * 2)
            },
            &mut Vec::new(),
        )
        .expect("run");
        assert_eq!(result.results, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(result.failures.count(), 0);
    }

    #[test]
    fn failures_are_counted_with_reasons() {
        let items: Vec<usize> = (0..100).collect();
        let result = run(
            &quiet(4, 1000),
            &items,
            |i| format!("agent-{i}"),
            || (),
            |_, item, _| {
                if item % 10 == 0 {
                    Outcome::Failed("refused".into())
                } else {
                    Outcome::Done(*item)
                }
            },
            &mut Vec::new(),
        )
        .expect("run");
        assert_eq!(result.results.len(), 90);
        assert_eq!(result.failures.count(), 10);
    }

    #[test]
    fn a_run_of_failures_stops_the_phase_and_counts_the_rest() {
        let items: Vec<usize> = (0..10_000).collect();
        let result = run(
            &quiet(2, 20),
            &items,
            |i| format!("agent-{i}"),
            || (),
            |_, _, _| Outcome::<()>::Failed("node down".into()),
            &mut Vec::new(),
        )
        .expect("run");
        assert!(result.results.is_empty());
        assert_eq!(result.failures.count(), 10_000);
        let text = result.failures.describe("registration");
        assert!(
            text.contains("not attempted: stopped after 20 failures in a row"),
            "{text}"
        );
        assert!(text.contains("node down"), "{text}");
    }

    #[test]
    fn progress_lines_end_with_a_final_one() {
        let items = [1, 2, 3];
        let line = |tally: &Tally, _: Duration| format!("done {}", tally.succeeded());
        let phase = Phase {
            threads: 2,
            consecutive_failures_max: 5,
            progress: Some(&line),
        };
        let mut out = Vec::new();
        run(
            &phase,
            &items,
            |i| i.to_string(),
            || (),
            |_, i, _| Outcome::Done(*i),
            &mut out,
        )
        .expect("run");
        let text = String::from_utf8(out).expect("text");
        assert_eq!(text.lines().last(), Some("done 3"));
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(rate(500, Duration::from_secs(2)), "250.0/s");
        assert_eq!(rate(1, Duration::ZERO), "-/s");
    }
}
