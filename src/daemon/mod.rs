//! Start-up and wiring: configuration, directories, logging, driver choice, pid file, listeners,
//! signals. Everything that needs the runtime is handed to `transport`.

pub mod pidfile;
mod run;
mod startup;

pub use run::{run, DaemonArgs, DaemonError};
