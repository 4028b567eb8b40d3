//! The subcommands.

pub mod agent;
pub mod check;
pub mod cni;
pub mod conformance;
pub mod node;
pub mod workload;
