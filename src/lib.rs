//! clusterd: a drop-in reimplementation of the Wazuh cluster daemon.
//!
//! Layers, top to bottom (data never flows back up):
//! - `daemon`: start-up, pid file, signals, wiring;
//! - `transport`: the only code that knows the async runtime (sockets, timers, driver choice);
//! - `proto`: the IO-free protocol engine (codec, Fernet, requests, node state machines);
//! - `config`: typed, validated configuration.
//!
//! `logging` formats `logs/cluster.log` lines; `control` is the client side of the local socket used by
//! `cluster_control` and the load tool; `loadgen` is the agent simulator of `cluster-load agents`.
//! `metrics` holds the Prometheus series and the `/metrics`, `/healthz`, `/readyz` endpoint.

pub mod config;
pub mod control;
pub mod daemon;
pub mod harness;
pub mod loadgen;
pub mod logging;
pub mod metrics;
pub mod pool;
pub mod proto;
pub mod store;
pub mod sync;
pub mod transport;
