//! Bulkhead's kernel side: the engine's model rendered to nftables and applied atomically.
//!
//! [`render()`] turns a compiled [`bulkhead_engine::Cluster`] and the endpoints local to a
//! node into a [`Table`]: plain data (sets, verdict maps, chains). [`table::diff`] computes
//! the smallest nft transaction from the table in the kernel to the intended one, and
//! [`Dataplane`] applies it with `nft -f -` (one kernel transaction: all or nothing), or,
//! when only set and map elements change, as one nf_tables netlink batch ([`netlink`]).
//!
//! What it does not do: decide semantics (the engine does; the renderer only walks the
//! engine's per-endpoint tier lists and compiled rules), or create namespaces and
//! interfaces (`bulkhead-netns`). The key decision: the intended state lives in memory and
//! every change is a diff against it, so the kernel never has a window in which an
//! endpoint is unprotected, and nothing polls `nft list ruleset`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod apply;
pub mod diff;
pub mod dispatch;
pub mod naming;
pub mod netlink;
pub mod render;
pub mod rules;
pub mod session;
pub mod table;
pub mod tag;
#[cfg(test)]
mod test_policy;

pub use apply::{Applied, CommandRunner, Dataplane, DataplaneError, ElementsError, NftRunner};
pub use diff::{TableDiff, Touched};
pub use render::{LocalEndpoint, RenderConfig, render};
pub use table::{DiffStats, Table};
pub use tag::Tagging;
