//! Incremental calculation of one node's nftables table.
//!
//! An agent learns about resources one change at a time: a pod comes, a namespace is
//! relabelled, a policy is edited. Recompiling the whole cluster and re-rendering the
//! table for each change (`Cluster::build` + `bulkhead_dataplane::render`) is correct but
//! costs time in proportion to the cluster. [`CalcGraph`] keeps the node's table up to
//! date with work in proportion to the *change*, and says what changed as a [`Delta`] in
//! an order the kernel can apply it.
//!
//! ```
//! use bulkhead_api::load_str;
//! use bulkhead_calc::{CalcGraph, NodeConfig, Update};
//! use bulkhead_dataplane::RenderConfig;
//!
//! let mut graph = CalcGraph::new(NodeConfig {
//!     node: "node-a".into(),
//!     render: RenderConfig::default(),
//! });
//! let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n\
//!            spec: {nodeName: node-a}\nstatus: {podIP: 10.0.0.1}\n";
//! for loaded in load_str("example", pod).expect("valid") {
//!     graph.apply(Update::Upsert(loaded.resource));
//! }
//! let delta = graph.flush();
//! assert!(!delta.is_empty());
//! assert_eq!(graph.table().maps["wl_to"].elements.len(), 1);
//! ```
//!
//! # The contract
//!
//! After any sequence of [`Update`]s, in any order, and a [`CalcGraph::flush`],
//! [`CalcGraph::table`] is exactly the table the from-scratch path renders for the
//! current resources and this node's endpoints. The engine stays the single source of
//! truth: the graph reuses its conversions (`bulkhead_engine::incremental`), its policy
//! compiler and label flattening, and the dataplane's own rendering functions for every
//! chain and set element. What is incremental is *which* pieces are recomputed.
//!
//! # The pieces (Felix's calculation graph, for one node)
//!
//! - the inherit index: namespaces, service accounts and profiles, the labels endpoints
//!   inherit from them, and which endpoints inherit from which (a namespace relabel
//!   re-flattens that namespace's endpoints and network sets only);
//! - the IP set index: for every selector and named port that a rendered rule uses, its
//!   members over *all* endpoints and network sets, reference counted, maintained through
//!   label-restriction indexes in both directions;
//! - the active rules calculator: enforced policies against *local* endpoints, and each
//!   local endpoint's tier list (recomputed for dirty endpoints only);
//! - the sequencer: the table, and the minimal delta of each flush.
//!
//! What this crate does not do: I/O, talking to the kernel (`bulkhead-dataplane` applies
//! tables and deltas), deciding semantics (the engine), or watching the datastore. The
//! graph is single-threaded; its edges are plain calls. `docs/calc.md` has the node
//! contracts, the flush order and the review checklist.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod active_rules;
mod aggregate;
mod flush;
mod graph;
mod inherit;
mod ipsets;
mod label_index;
mod selector_index;
mod sequencer;

pub use graph::{CalcGraph, NodeConfig, Stats, Update};
pub use sequencer::{Change, Delta};

/// An endpoint's or network set's identity inside the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ItemId(u32);
