//! The IO-free protocol engine. Nothing here touches sockets, files, clocks or the async runtime:
//! time and randomness come in as arguments, frames and actions go out as data.

pub mod agent_jobs;
pub mod command;
pub mod connection;
pub mod crypto;
pub mod dapi;
pub mod decoder;
pub mod encoder;
pub mod files;
pub mod frame;
pub mod jobs;
pub mod node;
pub mod quote;
pub mod requests;
pub mod strings;
pub mod transfer;
pub mod wazuh_error;
