//! Bulkhead's policy semantics, pure and in memory.
//!
//! A [`Cluster`] is a compiled snapshot of resources (policies, tiers, profiles, endpoints,
//! network sets); [`Cluster::evaluate`] answers, for one [`Flow`], what the dataplane
//! enforces and what staged policies would change, with the trace of tiers, policies and
//! rules that decided each side ([`Decision`]). [`explain`] turns that into words.
//!
//! What this crate does not do: I/O of any kind, incremental updates (that is
//! `bulkhead-calc`), or rendering to a dataplane. The key design decision: the engine is
//! the single source of truth for semantics. The dataplane is tested against it; explain,
//! preview and flow-log enrichment are built on it. It is a pure function of a snapshot,
//! and it never depends on the order resources were loaded in.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod compile;
pub mod decision;
pub mod endpoint;
pub mod eval;
pub mod explain;
pub mod failsafe;
pub mod flow;
pub mod host_defaults;
pub mod incremental;
pub mod index;
pub mod interner;
pub mod k8s_convert;
pub mod matrix;
pub mod model;
mod net_index;
pub mod view;

pub use decision::{
    Decision, Direction, EndpointKind, EndpointRef, Hit, HitAction, Name, Outcome, PolicyRef,
    RuleRef, SideOutcome, Verdict,
};
pub use flow::Flow;
pub use model::{Cluster, Mode, ModelError, Tier};
