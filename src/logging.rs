//! Placeholder log macros (replaced by the cluster.log writer).
#[macro_export]
macro_rules! clog_info { ($tag:expr, $sub:expr, $($arg:tt)+) => { ::tracing::info!(tag = %$tag, subtag = %$sub, $($arg)+) }; }
#[macro_export]
macro_rules! clog_debug { ($tag:expr, $sub:expr, $($arg:tt)+) => { ::tracing::debug!(tag = %$tag, subtag = %$sub, $($arg)+) }; }
#[macro_export]
macro_rules! clog_debug2 { ($tag:expr, $sub:expr, $($arg:tt)+) => { ::tracing::trace!(tag = %$tag, subtag = %$sub, $($arg)+) }; }
#[macro_export]
macro_rules! clog_warn { ($tag:expr, $sub:expr, $($arg:tt)+) => { ::tracing::warn!(tag = %$tag, subtag = %$sub, $($arg)+) }; }
#[macro_export]
macro_rules! clog_error { ($tag:expr, $sub:expr, $($arg:tt)+) => { ::tracing::error!(tag = %$tag, subtag = %$sub, $($arg)+) }; }
