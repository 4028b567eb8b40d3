//! A blocking client of the Bulkhead HTTP API (`docs/api.md`): typed get, list, create,
//! replace, patch, delete and watch on every kind, errors decoded from the server's
//! Kubernetes `Status` (reason, code, message, field causes), and the CLI's configuration
//! (flags, then `BULKHEAD_SERVER`/`BULKHEAD_TOKEN`, then `~/.config/bulkhead/config`).
//!
//! Objects from the server go through the same loader as files (`bulkhead-api`), so a
//! `Resource` from the server is defaulted and validated exactly like one from disk. The
//! client is written against the contract, not the server's code: paths, verbs, list and
//! watch formats are those of `docs/api.md`.
//!
//! ```no_run
//! use bulkhead_api::Kind;
//! use bulkhead_client::Client;
//!
//! let client = Client::new("http://127.0.0.1:8080", Some("token"))?;
//! let list = client.list(Kind::GlobalNetworkPolicy, None, Some("has(app)"))?;
//! for event in client.watch(Kind::GlobalNetworkPolicy, list.revision)? {
//!     println!("{:?}", event?);
//! }
//! # Ok::<(), bulkhead_client::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
pub mod config;
pub mod decode;
pub mod error;
pub mod paths;

pub use client::{Client, List, Watch, WatchEvent};
pub use config::{Config, FileConfig};
pub use error::{Error, Status, StatusCause, StatusDetails};
pub use paths::kind_from_name;

#[cfg(test)]
mod wire_tests;
