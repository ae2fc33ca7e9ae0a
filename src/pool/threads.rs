//! A fixed set of core-pinned threads that run file jobs (walking, hashing, packaging, applying) away
//! from the event loop.
//!
//! The event loop must never wait on the pool, so submission never blocks: the queue is bounded and a
//! full queue is reported to the caller, who decides whether to retry later or refuse the peer. Jobs
//! and their results are plain data; whatever a job does, including panicking, ends as one result
//! handed to `deliver`, so a caller waiting on a job id always hears back.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics;

/// Names a job in its result; chosen by the submitter.
pub type JobId = u64;

/// Why a job produced no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The job panicked; the message is the panic payload when it was text.
    #[error("job panicked: {0}")]
    Panicked(String),
    /// A file operation failed.
    #[error("{message}")]
    Io {
        kind: io::ErrorKind,
        message: String,
    },
    /// Any other failure, in the job's own words.
    #[error("{0}")]
    Failed(String),
}

impl From<io::Error> for JobError {
    fn from(error: io::Error) -> JobError {
        JobError::Io {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// Why a job was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every queue slot is taken; try again once results come back.
    #[error("the worker pool queue is full")]
    Full,
    /// The threads are gone (only possible while the pool is being torn down).
    #[error("the worker pool is shut down")]
    Closed,
}

type Job<R> = Box<dyn FnOnce() -> Result<R, JobError> + Send + 'static>;
type Deliver<R> = Arc<dyn Fn(JobId, Result<R, JobError>) + Send + Sync + 'static>;

/// Core-pinned worker threads fed by one bounded queue.
pub struct Pool<R: Send + 'static> {
    /// `None` only during drop, so the threads see the queue close.
    sender: Option<Sender<(JobId, Job<R>)>>,
    handles: Vec<JoinHandle<()>>,
    /// The metric labels of this pool's queue depth and busy time, when it is observed.
    observed: Option<Observed>,
}

/// Which `clusterd_queue_depth` and `clusterd_pool_busy_seconds_total` series a pool feeds.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    /// `None`: the queue that matters is upstream (DAPI requests wait in the engine's own queue).
    pub queue: Option<metrics::Queue>,
    pub pool: metrics::Pool,
}

impl<R: Send + 'static> Pool<R> {
    /// Starts `threads` threads (0 means one per core) sharing a queue of `queue_capacity` jobs.
    ///
    /// `deliver` is called on the worker thread with each result, so it should only hand the result
    /// over (to a channel or the event loop's waker), not do work of its own. A capacity of 0 is
    /// refused: such a queue would accept a job only at the instant a thread happens to be idle.
    pub fn new(
        threads: usize,
        queue_capacity: usize,
        deliver: impl Fn(JobId, Result<R, JobError>) + Send + Sync + 'static,
    ) -> io::Result<Pool<R>> {
        Pool::observed(threads, queue_capacity, deliver, None)
    }

    /// As [`Pool::new`], recording its queue depth and its threads' busy time under `observed`.
    pub fn observed(
        threads: usize,
        queue_capacity: usize,
        deliver: impl Fn(JobId, Result<R, JobError>) + Send + Sync + 'static,
        observed: Option<Observed>,
    ) -> io::Result<Pool<R>> {
        if queue_capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the worker pool queue needs room for at least one job",
            ));
        }
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        // The core list honours the process's affinity mask (taskset, cgroup cpusets).
        let threads = match (threads, cores.len()) {
            (0, 0) => thread::available_parallelism().map_or(1, usize::from),
            (0, n) => n,
            (n, _) => n,
        };
        let (sender, receiver) = crossbeam_channel::bounded::<(JobId, Job<R>)>(queue_capacity);
        let deliver: Deliver<R> = Arc::new(deliver);
        let mut pool = Pool {
            sender: Some(sender),
            handles: Vec::with_capacity(threads),
            observed,
        };
        for index in 0..threads {
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let receiver = receiver.clone();
            let deliver = Arc::clone(&deliver);
            // On failure `pool` is dropped here, which closes the queue and joins the threads
            // already started.
            let handle = thread::Builder::new()
                .name(format!("clusterd-pool-{index}"))
                .spawn(move || run_thread(core, receiver, deliver, observed))?;
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    /// Queues `job`; never blocks. `Err(PoolError::Full)` when the queue is full.
    pub fn submit(
        &self,
        id: JobId,
        job: impl FnOnce() -> Result<R, JobError> + Send + 'static,
    ) -> Result<(), PoolError> {
        let sender = self.sender.as_ref().ok_or(PoolError::Closed)?;
        match sender.try_send((id, Box::new(job))) {
            Ok(()) => {
                if let Some(queue) = self.observed.and_then(|o| o.queue) {
                    metrics::Metrics::global().queue_depth(queue, sender.len());
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(PoolError::Full),
            Err(TrySendError::Disconnected(_)) => Err(PoolError::Closed),
        }
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    /// Jobs waiting for a thread (not counting the ones running).
    pub fn queued(&self) -> usize {
        self.sender.as_ref().map_or(0, Sender::len)
    }
}

impl<R: Send + 'static> Drop for Pool<R> {
    /// Closes the queue, lets the threads finish every queued job, and joins them.
    fn drop(&mut self) {
        self.sender = None;
        for handle in self.handles.drain(..) {
            // A thread only ends by panicking if `deliver` itself panicked twice over; nothing to add.
            let _ = handle.join();
        }
    }
}

/// Body of one pool thread: pin, then run jobs until the queue is closed and empty.
fn run_thread<R>(
    core: Option<core_affinity::CoreId>,
    receiver: Receiver<(JobId, Job<R>)>,
    deliver: Deliver<R>,
    observed: Option<Observed>,
) {
    if let Some(core) = core {
        // Pinning is an optimisation (cache locality, no migration); a container or cgroup that
        // forbids it still gets a working pool.
        let _ = core_affinity::set_for_current(core);
    }
    while let Ok((id, job)) = receiver.recv() {
        let started = std::time::Instant::now();
        if let Some(queue) = observed.and_then(|o| o.queue) {
            metrics::Metrics::global().queue_depth(queue, receiver.len());
        }
        let result = panic::catch_unwind(AssertUnwindSafe(job))
            .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(payload.as_ref()))));
        if let Some(o) = observed {
            metrics::Metrics::global().pool_busy(o.pool, started.elapsed());
        }
        // A panicking `deliver` must not take the thread, and with it the rest of the queue, down.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| deliver(id, result)));
    }
}

/// The text of a panic payload (`panic!("...")` carries `&str` or `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Barrier, Mutex};
    use std::time::Duration;

    type Results = Arc<Mutex<Vec<(JobId, Result<u64, JobError>)>>>;

    fn collecting_pool(threads: usize, capacity: usize) -> (Pool<u64>, Results) {
        let results: Results = Arc::default();
        let sink = Arc::clone(&results);
        let pool = Pool::new(threads, capacity, move |id, result| {
            sink.lock().unwrap().push((id, result));
        })
        .unwrap();
        (pool, results)
    }

    #[test]
    fn runs_jobs_and_delivers_every_result() {
        let (pool, results) = collecting_pool(2, 64);
        assert_eq!(pool.threads(), 2);
        for id in 0..50u64 {
            pool.submit(id, move || Ok(id * 2)).unwrap();
        }
        drop(pool);
        let mut results = results.lock().unwrap().clone();
        results.sort_by_key(|(id, _)| *id);
        assert_eq!(results.len(), 50);
        for (id, result) in results {
            assert_eq!(result, Ok(id * 2));
        }
    }

    #[test]
    fn zero_threads_means_one_per_core_and_zero_capacity_is_refused() {
        let (pool, _) = collecting_pool(0, 1);
        assert!(pool.threads() >= 1);
        let refused = Pool::<u64>::new(1, 0, |_, _| {});
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(io::ErrorKind::InvalidInput)
        );
    }

    #[test]
    fn a_panic_becomes_an_error_result_and_the_thread_survives() {
        let (pool, results) = collecting_pool(1, 8);
        pool.submit(1, || panic!("bad file")).unwrap();
        pool.submit(2, || panic!("{} bytes", 3)).unwrap();
        pool.submit(3, || Ok(7)).unwrap();
        pool.submit(4, || Err(io::Error::other("disk gone").into()))
            .unwrap();
        drop(pool);
        let results = results.lock().unwrap().clone();
        assert_eq!(
            results,
            vec![
                (1, Err(JobError::Panicked("bad file".into()))),
                (2, Err(JobError::Panicked("3 bytes".into()))),
                (3, Ok(7)),
                (
                    4,
                    Err(JobError::Io {
                        kind: io::ErrorKind::Other,
                        message: "disk gone".into()
                    })
                ),
            ]
        );
    }

    #[test]
    fn submit_never_blocks_and_reports_a_full_queue() {
        let (pool, results) = collecting_pool(1, 2);
        let gate = Arc::new(Barrier::new(2));
        let held = Arc::clone(&gate);
        pool.submit(0, move || {
            held.wait();
            Ok(0)
        })
        .unwrap();
        // Wait until the only thread has taken job 0, so the queue is empty again.
        while pool.queued() > 0 {
            thread::sleep(Duration::from_millis(1));
        }
        pool.submit(1, || Ok(1)).unwrap();
        pool.submit(2, || Ok(2)).unwrap();
        assert_eq!(pool.submit(3, || Ok(3)), Err(PoolError::Full));
        gate.wait();
        drop(pool);
        let ids: Vec<JobId> = results.lock().unwrap().iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![0, 1, 2]);
    }

    #[test]
    fn a_panicking_deliver_does_not_stop_the_pool() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let pool = Pool::new(1, 8, move |id, _result: Result<(), JobError>| {
            sink.lock().unwrap().push(id);
            if id == 1 {
                panic!("receiver gone");
            }
        })
        .unwrap();
        for id in 1..=3 {
            pool.submit(id, || Ok(())).unwrap();
        }
        drop(pool);
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
    }
}
