//! The `tracing` layer that turns events into `cluster.log` lines.
//!
//! Only events whose target starts with `clusterd` are kept: dependencies log under their own crate
//! names and their messages have no place in a file other tools parse. Spans are not used.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};

use super::line::{DEFAULT_SUBTAG, DEFAULT_TAG};
use super::sink::Sink;

/// Target prefix of the events this layer writes.
pub const TARGET_PREFIX: &str = "clusterd";

/// Writes the crate's events to `cluster.log` (see [`super::LogBuilder`]).
pub struct ClusterLogLayer {
    sink: Arc<Sink>,
    max_level: LevelFilter,
}

impl ClusterLogLayer {
    pub(super) fn new(sink: Arc<Sink>, max_level: LevelFilter) -> Self {
        ClusterLogLayer { sink, max_level }
    }

    fn wanted(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event()
            && meta.target().starts_with(TARGET_PREFIX)
            && *meta.level() <= self.max_level
    }
}

impl<S: Subscriber> Layer<S> for ClusterLogLayer {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.wanted(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.wanted(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !self.wanted(event.metadata()) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.sink.write_event(
            event.metadata().level(),
            fields.tag.as_deref().unwrap_or(DEFAULT_TAG),
            fields.subtag.as_deref().unwrap_or(DEFAULT_SUBTAG),
            &fields.message,
        );
    }
}

/// Collects the message, the `tag`/`subtag` fields and, appended as ` name=value`, any other field.
#[derive(Default)]
struct Fields {
    message: String,
    tag: Option<String>,
    subtag: Option<String>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        // Writing into a String only fails if a Display/Debug impl reports an error; the
        // partial text is kept rather than panicking.
        match field.name() {
            "message" => {
                let _ = self.message.write_fmt(value);
            }
            "tag" => {
                let mut s = String::new();
                let _ = s.write_fmt(value);
                self.tag = Some(s);
            }
            "subtag" => {
                let mut s = String::new();
                let _ = s.write_fmt(value);
                self.subtag = Some(s);
            }
            name => {
                let _ = write!(self.message, " {name}=");
                let _ = self.message.write_fmt(value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    /// Events from elsewhere are not written even at the most verbose level.
    #[test]
    fn foreign_targets_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.log");
        let (subscriber, _guard) = crate::logging::LogBuilder::new(&path)
            .debug_level(2)
            .subscriber()
            .expect("subscriber");
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "other_crate", "not mine");
            tracing::info!(target: "clusterd_like::x", tag = "T", "mine");
            tracing::info!(tag = "T", subtag = "S", peer = 7, "with extra");
        });
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().map(|l| &l[20..]).collect();
        assert_eq!(
            lines,
            ["INFO: [T] [Main] mine", "INFO: [T] [S] with extra peer=7"]
        );
    }
}
