//! From request bodies to stored documents and back.
//!
//! A body is parsed (JSON, or YAML by content type), checked against the path (kind,
//! namespace, name), then loaded by `bulkhead_api::load_str`, the CLI's loader: the same
//! decoding (unknown fields are errors), defaulting and validation, with the same field
//! paths. The stored value is the defaulted document plus `metadata.uid`,
//! `creationTimestamp` and `generation`; `metadata.resourceVersion` is never stored, it is
//! the key's `mod_revision` and is spliced in when the object is served.

use std::collections::BTreeMap;

use bulkhead_api::{Kind, Resource};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, Cause};
use crate::kinds::{KindInfo, Target};

/// Body formats the server reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json` (the default).
    Json,
    /// `application/yaml`.
    Yaml,
}

impl Format {
    /// The format for a `Content-Type` (`None`: JSON). Merge patches are JSON.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Format, ApiError> {
        let Some(ct) = content_type else {
            return Ok(Format::Json);
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "" | "application/json" | "application/merge-patch+json" | "*/*" => Ok(Format::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(Format::Yaml),
            other => Err(ApiError::unsupported_media_type(format!(
                "Content-Type {other:?} is not supported: send application/json or application/yaml{}",
                if other.contains("patch") {
                    " (patches: application/merge-patch+json)"
                } else {
                    ""
                }
            ))),
        }
    }
}

/// Parses a body into a JSON value; malformed input is a 400 with the position.
pub fn parse_body(bytes: &[u8], format: Format) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "malformed JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            ))
        }),
        Format::Yaml => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| ApiError::bad_request(format!("the YAML body is not UTF-8: {e}")))?;
            bulkhead_api::yaml::from_str::<Value>(text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or_default();
                let message = e.without_snippet().to_string();
                let first = message.lines().next().unwrap_or_default().to_string();
                ApiError::bad_request(format!("malformed YAML{at}: {first}"))
            })
        }
    }
}

/// serde_json appends " at line L column C"; we print our own.
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

fn doc_str<'a>(doc: &'a Value, field: &str) -> Option<&'a str> {
    doc.get(field).and_then(Value::as_str)
}

/// Checks `value` against the path, fills in namespace and name from it, and loads it with
/// the CLI's loader. Returns the defaulted, validated resource.
pub fn admit(target: &Target, mut value: Value) -> Result<Resource, ApiError> {
    let info = target.info;
    let kind = info.kind;
    let Value::Object(map) = &mut value else {
        return Err(ApiError::bad_request(
            "the body must be an object with apiVersion, kind and metadata",
        ));
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    let kind_name = map.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind_name)) = (api_version, kind_name) else {
        return Err(ApiError::bad_request(
            "the body needs apiVersion and kind (strings)",
        ));
    };
    if kind_name.ends_with("List") {
        return Err(ApiError::bad_request(format!(
            "{kind_name} cannot be written to {}: send each item on its own",
            info.collection_path(target.namespace.as_deref())
        )));
    }
    if api_version != kind.api_version() || kind_name != kind.kind_name() {
        return Err(ApiError::bad_request(format!(
            "the body is {api_version} {kind_name} but {} serves {} {}",
            info.collection_path(target.namespace.as_deref()),
            kind.api_version(),
            kind.kind_name()
        )));
    }
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else {
        return Err(ApiError::invalid(
            kind.kind_name(),
            target.name.as_deref().unwrap_or(""),
            vec![Cause {
                field: "metadata".into(),
                message: "expected an object".into(),
            }],
        ));
    };
    if let Some(path_name) = &target.name {
        match metadata.get("name") {
            // As Kubernetes: the body names the object it replaces.
            None => {
                return Err(ApiError::bad_request(format!(
                    "metadata.name is missing: the body must name the object of the path, {path_name:?}"
                )));
            }
            Some(Value::String(n)) if n == path_name => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "metadata.name {other} does not match the name in the path, {path_name:?}"
                )));
            }
        }
    }
    if kind.is_namespaced()
        && let Some(path_ns) = &target.namespace
    {
        match metadata.get("namespace") {
            None => {
                metadata.insert("namespace".into(), Value::String(path_ns.clone()));
            }
            Some(Value::String(n)) if n == path_ns => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "metadata.namespace {other} does not match the namespace in the path, {path_ns:?}"
                )));
            }
        }
    }
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    // Re-serialising costs a few microseconds and buys the exact loader the CLI uses.
    let text = serde_json::to_string(&value)
        .map_err(|e| ApiError::internal(format!("re-encoding the body: {e}")))?;
    let text = bulkhead_api::yaml_readable_json(&text);
    let mut loaded = bulkhead_api::load_str("body", &text).map_err(|errors| {
        let causes = errors
            .0
            .into_iter()
            .map(|e| Cause {
                field: e.field.unwrap_or_default(),
                message: e.message,
            })
            .collect();
        ApiError::invalid(kind.kind_name(), &name, causes)
    })?;
    match (loaded.pop(), loaded.is_empty()) {
        (Some(one), true) if one.resource.kind() == kind => Ok(one.resource),
        _ => Err(ApiError::bad_request(
            "the body must hold exactly one object",
        )),
    }
}

/// The tier a resource belongs to, for RBAC and alerts: a policy's `spec.tier` (defaulted
/// by validation; Kubernetes policies are in `default`), a tier's own name.
pub fn tier_of(resource: &Resource) -> Option<String> {
    let kind = resource.kind();
    if kind == Kind::Tier {
        return Some(resource.meta().name.clone());
    }
    if !kind.is_policy() {
        return None;
    }
    let doc = resource.to_document();
    Some(tier_of_doc(kind, &doc).unwrap_or_else(|| bulkhead_api::DEFAULT_TIER.to_string()))
}

/// The tier of a stored or served document (see [`tier_of`]).
pub fn tier_of_doc(kind: Kind, doc: &Value) -> Option<String> {
    if kind == Kind::Tier {
        return doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if !kind.is_policy() {
        return None;
    }
    Some(
        doc.pointer("/spec/tier")
            .and_then(Value::as_str)
            .unwrap_or(bulkhead_api::DEFAULT_TIER)
            .to_string(),
    )
}

/// Server-managed metadata kept across updates.
#[derive(Debug, Clone)]
pub struct ServerMeta {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp`.
    pub created: String,
    /// `metadata.generation`.
    pub generation: i64,
}

impl ServerMeta {
    /// Reads the server metadata of a stored document.
    pub fn of(doc: &Value) -> Option<ServerMeta> {
        Some(ServerMeta {
            uid: doc.pointer("/metadata/uid")?.as_str()?.to_string(),
            created: doc
                .pointer("/metadata/creationTimestamp")?
                .as_str()?
                .to_string(),
            generation: doc
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        })
    }
}

/// The document to store for `resource`: defaulted, with the server metadata and without a
/// resourceVersion. `generation` goes up when anything but metadata changed.
pub fn stored_document(resource: &Resource, meta: &ServerMeta, previous: Option<&Value>) -> Value {
    let mut doc = resource.to_document();
    let changed = previous.is_some_and(|prev| {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Value::Object(m) = &mut v {
                m.remove("metadata");
            }
            v
        };
        strip(prev) != strip(&doc)
    });
    if let Some(Value::Object(m)) = doc.get_mut("metadata") {
        m.remove("resourceVersion");
        m.remove("selfLink");
        m.insert("uid".into(), Value::String(meta.uid.clone()));
        m.insert(
            "creationTimestamp".into(),
            Value::String(meta.created.clone()),
        );
        m.insert(
            "generation".into(),
            Value::from(meta.generation + i64::from(changed)),
        );
    }
    doc
}

/// Sets `metadata.resourceVersion` on a document.
pub fn set_resource_version(doc: &mut Value, revision: u64) {
    if let Some(Value::Object(m)) = doc.get_mut("metadata") {
        m.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// A stored value as served: the JSON bytes with `metadata.resourceVersion` spliced in.
///
/// The server writes every document itself, as `{"apiVersion":…,"kind":…,"metadata":{…`
/// (serde_json writes a `Value`'s keys in sorted order, and `to_document` inserts them in
/// that order too), so the splice is a byte copy; anything else is decoded and re-encoded.
pub fn served_bytes(info: KindInfo, stored: &[u8], revision: u64) -> Result<Vec<u8>, ApiError> {
    let prefix = format!(
        "{{\"apiVersion\":\"{}\",\"kind\":\"{}\",\"metadata\":{{",
        info.kind.api_version(),
        info.kind.kind_name()
    );
    let rv = format!("\"resourceVersion\":\"{revision}\"");
    if let Some(rest) = stored.strip_prefix(prefix.as_bytes())
        && !rest.contains_resource_version()
    {
        let mut out = Vec::with_capacity(stored.len() + rv.len() + 1);
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(rv.as_bytes());
        if !rest.starts_with(b"}") {
            out.push(b',');
        }
        out.extend_from_slice(rest);
        return Ok(out);
    }
    let mut doc = decode_stored(stored)?;
    set_resource_version(&mut doc, revision);
    serde_json::to_vec(&doc).map_err(|e| ApiError::internal(format!("encoding: {e}")))
}

trait ContainsRv {
    fn contains_resource_version(&self) -> bool;
}

impl ContainsRv for [u8] {
    /// Stored documents never carry a resourceVersion; one that does (written by something
    /// else) takes the slow path so it is replaced rather than duplicated.
    fn contains_resource_version(&self) -> bool {
        self.windows(17).any(|w| w == b"\"resourceVersion\"")
    }
}

/// Decodes a stored value.
pub fn decode_stored(stored: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(stored)
        .map_err(|e| ApiError::internal(format!("a stored object does not decode: {e}")))
}

/// A stored value as a served document.
pub fn served_value(stored: &[u8], revision: u64) -> Result<Value, ApiError> {
    let mut doc = decode_stored(stored)?;
    set_resource_version(&mut doc, revision);
    Ok(doc)
}

/// The fields of a stored document that list and watch filter on, decoded without the rest.
#[derive(Debug, Default, Deserialize)]
pub struct Summary {
    /// `metadata`.
    #[serde(default)]
    pub metadata: SummaryMeta,
    /// `spec`.
    #[serde(default)]
    pub spec: Option<SummarySpec>,
}

/// `metadata` of a [`Summary`].
#[derive(Debug, Default, Deserialize)]
pub struct SummaryMeta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `spec` of a [`Summary`].
#[derive(Debug, Default, Deserialize)]
pub struct SummarySpec {
    /// The policy tier.
    #[serde(default)]
    pub tier: Option<String>,
}

impl Summary {
    /// Decodes the summary of a stored value.
    pub fn of(stored: &[u8]) -> Result<Summary, ApiError> {
        serde_json::from_slice(stored)
            .map_err(|e| ApiError::internal(format!("a stored object does not decode: {e}")))
    }

    /// The tier (see [`tier_of`]).
    pub fn tier(&self, kind: Kind) -> Option<String> {
        if kind == Kind::Tier {
            return Some(self.metadata.name.clone());
        }
        kind.is_policy().then(|| {
            self.spec
                .as_ref()
                .and_then(|s| s.tier.clone())
                .unwrap_or_else(|| bulkhead_api::DEFAULT_TIER.to_string())
        })
    }
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// `apiVersion`/`kind` of a document, for messages.
pub fn describe(doc: &Value) -> String {
    format!(
        "{} {}",
        doc_str(doc, "apiVersion").unwrap_or("?"),
        doc_str(doc, "kind").unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        merge_patch(&mut doc, &json!({"c": ["x"]}));
        assert_eq!(doc, json!({"a": "z", "c": ["x"]}));
    }

    #[test]
    fn resource_versions_are_spliced_into_stored_documents() {
        let info = KindInfo::of(Kind::Tier);
        let doc = json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
            "metadata": {"name": "app", "uid": "u"}, "spec": {"order": 10}});
        let stored = serde_json::to_vec(&doc).expect("encode");
        let served: Value =
            serde_json::from_slice(&served_bytes(info, &stored, 42).expect("splice"))
                .expect("JSON");
        assert_eq!(served["metadata"]["resourceVersion"], "42");
        assert_eq!(served["metadata"]["uid"], "u");
        assert_eq!(served["spec"]["order"], 10);
        // A document in another shape takes the slow path and still comes out right.
        let odd = br#"{"kind":"Tier","apiVersion":"projectcalico.org/v3","metadata":{"name":"a","resourceVersion":"1"}}"#;
        let served: Value =
            serde_json::from_slice(&served_bytes(info, odd, 7).expect("decode")).expect("JSON");
        assert_eq!(served["metadata"]["resourceVersion"], "7");
    }
}
