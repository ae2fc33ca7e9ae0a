//! The distributed API (PROTOCOL.md §4.5), IO-free: requests checked against code execution and
//! the allow-list, results in the stock encoding, the merge of several nodes' answers, and the jobs
//! the engine hands the pool to run them. The engine's flow lives in `node/dapi*.rs`.

pub mod allow;
pub mod encode;
pub mod job;
pub mod merge;
pub mod request;
pub mod scope;

pub use allow::{classify, Execution, Native};
pub use job::{DapiJob, DapiOutcome};
pub use request::{DapiRequest, Refusal, RequestType};
