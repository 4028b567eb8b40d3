//! The subcommands.

pub mod agent;
pub mod apply;
pub mod audit;
pub mod check;
pub mod cni;
pub mod conformance;
pub mod delete;
pub mod describe;
pub mod diff;
pub mod get;
pub mod host_defaults;
pub mod login;
pub mod node;
pub mod server;
pub mod workload;
