//! Start-up and wiring: configuration, the instance lock, directories, logging, driver choice,
//! privileges, pid file, listeners, signals. Everything that needs the runtime is handed to
//! `transport`.

pub mod instance;
pub mod pidfile;
mod privileges;
mod report;
mod run;
mod startup;

pub use run::{run, DaemonArgs, DaemonError};
