//! `logs/cluster.log`, written through `tracing`.
//!
//! Lines look like `2021/03/29 07:05:26 INFO: [Worker worker1] [Integrity check] Finished in 0.016s.`
//! (local time, one-second resolution) because operators and tools grep and time tasks by the
//! `[TAG] [SUBTAG]` pair. Call sites use the `clog_*!` macros, which attach both fields:
//!
//! ```
//! let t = 0.0161;
//! clusterd::clog_info!("Worker worker1", "Integrity check", "Finished in {:.3}s.", t);
//! ```
//!
//! Events without those fields are written as `[Cluster] [Main]`. The file is rotated at local
//! midnight into `logs/cluster/<YYYY>/<Mon>/cluster.log-<DD>.gz`.

mod layer;
mod line;
mod rotate;
mod sink;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDateTime;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::Registry;

pub use layer::{ClusterLogLayer, TARGET_PREFIX};
pub use line::{format_line, level_name, DEFAULT_SUBTAG, DEFAULT_TAG};
pub use rotate::archive_path;

/// Lets the exported macros reach `tracing` through this crate.
#[doc(hidden)]
pub use tracing as __tracing;

/// A complete subscriber writing only `cluster.log`, for [`tracing::subscriber::with_default`].
pub type ClusterSubscriber = Layered<ClusterLogLayer, Registry>;

/// Installs the global `cluster.log` writer.
///
/// `debug_level` is the number of `-d` flags (0 → INFO and up, 1 → DEBUG, 2 → DEBUG2); with
/// `foreground` every line is also written to standard error. Keep the returned guard alive for the
/// life of the process: dropping it waits for a rotation still being compressed.
pub fn init(log_file: &Path, debug_level: u8, foreground: bool) -> io::Result<LogGuard> {
    LogBuilder::new(log_file)
        .debug_level(debug_level)
        .foreground(foreground)
        .init()
}

/// Options of the `cluster.log` writer; [`init`] covers the daemon, the rest serves tests and tools.
pub struct LogBuilder {
    path: PathBuf,
    debug_level: u8,
    echo: Option<Box<dyn Write + Send>>,
    clock: Option<sink::Clock>,
}

impl LogBuilder {
    /// Writer for `log_file` at INFO level, without echo, using the local clock.
    pub fn new(log_file: impl Into<PathBuf>) -> Self {
        LogBuilder {
            path: log_file.into(),
            debug_level: 0,
            echo: None,
            clock: None,
        }
    }

    /// Number of `-d` flags (values above 2 mean 2).
    pub fn debug_level(mut self, level: u8) -> Self {
        self.debug_level = level;
        self
    }

    /// Echo every line to standard error (the daemon's `-f`).
    pub fn foreground(mut self, foreground: bool) -> Self {
        self.echo = if foreground {
            Some(Box::new(io::stderr()))
        } else {
            None
        };
        self
    }

    /// Echo every line to `writer` instead of standard error.
    pub fn echo_to(mut self, writer: impl Write + Send + 'static) -> Self {
        self.echo = Some(Box::new(writer));
        self
    }

    /// Replace the local clock (used for the timestamps and for midnight rotation).
    pub fn clock(mut self, clock: impl Fn() -> NaiveDateTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Opens the file and returns the layer, for composing with other layers.
    pub fn layer(self) -> io::Result<(ClusterLogLayer, LogGuard)> {
        let clock = self.clock.unwrap_or_else(sink::local_clock);
        let sink = Arc::new(sink::Sink::open(&self.path, clock, self.echo)?);
        let layer = ClusterLogLayer::new(Arc::clone(&sink), line::max_level(self.debug_level));
        Ok((layer, LogGuard { sink }))
    }

    /// Opens the file and returns a ready subscriber that is not installed anywhere.
    pub fn subscriber(self) -> io::Result<(ClusterSubscriber, LogGuard)> {
        let (layer, guard) = self.layer()?;
        Ok((Registry::default().with(layer), guard))
    }

    /// Opens the file and installs the subscriber as the process-wide default.
    pub fn init(self) -> io::Result<LogGuard> {
        let (subscriber, guard) = self.subscriber()?;
        tracing::subscriber::set_global_default(subscriber).map_err(io::Error::other)?;
        Ok(guard)
    }
}

/// Keeps the log's background work accountable: dropping it waits for a pending compression.
#[must_use = "dropping the guard early only loses the wait for a pending log compression"]
pub struct LogGuard {
    sink: Arc<sink::Sink>,
}

impl LogGuard {
    /// Blocks until the compression of a rotated day, if one is running, has finished.
    pub fn wait_archiver(&self) {
        self.sink.wait_archiver();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.sink.wait_archiver();
    }
}

/// Expands a `clog_*!` call to a `tracing` event with the crate's target and the two tag fields.
#[doc(hidden)]
#[macro_export]
macro_rules! __clog {
    ($level:ident, $tag:expr, $subtag:expr, $($arg:tt)+) => {
        $crate::logging::__tracing::event!(
            target: "clusterd",
            $crate::logging::__tracing::Level::$level,
            tag = %$tag,
            subtag = %$subtag,
            $($arg)+
        )
    };
}

/// `clog_error!(tag, subtag, "format", args...)`: an `ERROR` line `[tag] [subtag] message`.
#[macro_export]
macro_rules! clog_error {
    ($tag:expr, $subtag:expr, $($arg:tt)+) => { $crate::__clog!(ERROR, $tag, $subtag, $($arg)+) };
}

/// `clog_warn!(tag, subtag, "format", args...)`: a `WARNING` line.
#[macro_export]
macro_rules! clog_warn {
    ($tag:expr, $subtag:expr, $($arg:tt)+) => { $crate::__clog!(WARN, $tag, $subtag, $($arg)+) };
}

/// `clog_info!(tag, subtag, "format", args...)`: an `INFO` line.
#[macro_export]
macro_rules! clog_info {
    ($tag:expr, $subtag:expr, $($arg:tt)+) => { $crate::__clog!(INFO, $tag, $subtag, $($arg)+) };
}

/// `clog_debug!(tag, subtag, "format", args...)`: a `DEBUG` line (written with `-d`).
#[macro_export]
macro_rules! clog_debug {
    ($tag:expr, $subtag:expr, $($arg:tt)+) => { $crate::__clog!(DEBUG, $tag, $subtag, $($arg)+) };
}

/// `clog_debug2!(tag, subtag, "format", args...)`: a `DEBUG2` line (written with `-dd`).
#[macro_export]
macro_rules! clog_debug2 {
    ($tag:expr, $subtag:expr, $($arg:tt)+) => { $crate::__clog!(TRACE, $tag, $subtag, $($arg)+) };
}

#[cfg(test)]
mod tests;
