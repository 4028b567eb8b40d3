//! The Bulkhead agent: one per host. It takes resources (from a directory it watches, or
//! from the server by list and watch), computes what applies to its
//! node's endpoints with the engine, programs nftables through `bulkhead-dataplane`, and
//! reads the table back to repair and report tampering.
//!
//! It holds no authority: it only pulls, computes and enforces. The key decisions: a
//! restart restores the cached rules before anything else, so there is never a window
//! without enforcement; bad resources never reach the kernel (the last good state stays);
//! and a failed transaction leaves the previous rules in place.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod agent;
pub mod cache;
pub mod drift;
pub mod fingerprint;
pub mod http;
pub mod interfaces;
pub mod metrics;
pub mod node_publisher;
pub mod server_source;
pub mod source;

pub use agent::{Agent, AgentConfig, Source, Step};
pub use metrics::Metrics;
