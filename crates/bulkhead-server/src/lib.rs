//! The Bulkhead control plane: an HTTP API over the revisioned store (`bulkhead-store`),
//! following Kubernetes API conventions (`docs/api.md` is the contract, `docs/server.md` the
//! design).
//!
//! A request passes through the layers in one direction:
//!
//! ```text
//! request id ─► metrics ─► authentication ─► handler: authorize (tier RBAC) ─► validate
//!   (bearer token → Caller, 401)            (403, audited)      (bulkhead-api, 400/422)
//!                                                 ─► store (CAS on mod_revision, 409) ─► audit
//!                                                                  (hash-chained, fsynced)
//! ```
//!
//! The server keeps no copy of the objects: every read goes to the store, and every watch
//! is a store watch. So several servers on one etcd serve the same state, and a restart
//! (even after `kill -9`) loses nothing the store acknowledged.
//!
//! What it does not do: TLS (listen on loopback or put a TLS proxy in front), pagination of
//! lists, field selectors, server-side apply.
//!
//! The key design decision: a resource's `resourceVersion` is its key's `mod_revision` in the
//! store and is never stored in the value. Conflicts are then the store's compare-and-swap,
//! watches resume from any event's or bookmark's version, and nothing has to keep the two in
//! step.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod auth;
pub mod client;
pub mod error;
pub mod handlers;
pub mod kinds;
pub mod metrics;
pub mod objects;
pub mod openapi;
pub mod rbac;
pub mod recover;
pub mod server;
pub mod util;
pub mod watch;

pub use audit::{AuditError, verify};
pub use bulkhead_store::{EmbeddedOptions, EtcdOptions};
pub use error::{ApiError, ServerError};
pub use server::{Server, ServerConfig, StoreConfig, run_blocking};
