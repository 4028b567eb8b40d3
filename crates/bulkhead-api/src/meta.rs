//! Object metadata, as Kubernetes and Calico write it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Label or annotation map, sorted by key.
pub type LabelMap = BTreeMap<String, String>;

/// `metadata` of every resource.
///
/// The fields Bulkhead reads are typed. The server-managed fields that `kubectl get -o
/// yaml` prints (uid, resourceVersion, managedFields, …) are accepted and kept opaque so
/// that exported objects load unchanged; any other key is an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Namespace (namespaced kinds only; defaults to `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: LabelMap,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: LabelMap,
    /// Server-assigned UID (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Server resource version (kept, not used by loading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Server generation (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Creation time (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<serde_json::Value>,
    /// Deletion time (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<serde_json::Value>,
    /// Deletion grace period (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<i64>,
    /// Name prefix used by the API server to generate names (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Owners (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<serde_json::Value>,
    /// Finalizers (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<serde_json::Value>,
    /// Field managers (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<serde_json::Value>,
    /// Legacy self link (kept, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
}
