//! Agent registration on the master, and the master's side of `sendsync`.
//!
//! Workers forward the requests of their local daemons to the master (`sendsync`); the master hands
//! each to the named daemon's socket and returns the answer. Registrations go to authd. When no
//! authd listens on the master, [`Registrar`] answers in its place, keeping `etc/client.keys` and
//! the agent database as authd would.
//!
//! - [`keys`]: `client.keys` parsing and atomic writing;
//! - [`ip`]: agent addresses as authd validates and stores them;
//! - [`Registrar`]: the embedded registration service;
//! - [`DaemonRouter`]: routes forwarded requests to daemon sockets, the agent database or the
//!   registrar, with the answers and error texts the Wazuh master gives.

mod authd;
mod daemons;
mod embedded;
pub mod ip;
pub mod keys;
mod pyjson;
mod records;
mod socket;

pub use authd::ForceOptions;
pub use daemons::{Daemon, DaemonRouter, MAX_ANSWER};
pub use embedded::{Registrar, RegistrarOptions, MAX_BATCH};

/// Failures of the registration service itself (as opposed to refused requests, which are answers).
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// `client.keys` exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: keys::ReadError,
    },
}
