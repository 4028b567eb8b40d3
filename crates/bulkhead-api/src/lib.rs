//! Bulkhead's resources: the Calico `projectcalico.org/v3` kinds and the Kubernetes kinds
//! a microsegmentation policy refers to, loaded from multi-document YAML or JSON.
//!
//! This crate owns the wire format and nothing else: types that mirror what users write,
//! field for field ([`calico`], [`k8s`]); loading with positioned errors ([`load`]); and
//! defaulting and validation as Calico applies them ([`validate`]). It knows nothing of
//! evaluation (that is `bulkhead-engine`) or of storage and transport.
//!
//! The key decision: a load is all-or-nothing. Every document is checked and every error
//! is reported with its file, document index and line, field path and what was expected;
//! if any document is invalid, nothing from the load is used.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod advisories;
pub mod calico;
pub mod k8s;
pub mod load;
pub mod meta;
pub mod resource;
pub mod validate;
pub mod values;
pub mod yaml;

pub use advisories::{Advisory, advisories};
pub use load::{LoadError, LoadErrors, Loaded, Origin, load_paths, load_str, yaml_readable_json};
pub use meta::{LabelMap, ObjectMeta};
pub use resource::{Kind, Object, PodObject, Resource, ResourceKey};
pub use validate::{DEFAULT_TIER, NAMESPACE_LABEL, parse_cidr};
