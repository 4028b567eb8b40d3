//! Objects from the server into typed resources, with the same loader (defaulting and
//! validation) the CLI uses on files.

use bulkhead_api::{Kind, Resource, ResourceKey, load_str};
use serde_json::Value;

use crate::error::Error;

/// `metadata.resourceVersion` as a number (strings per the contract; numbers tolerated).
pub fn revision_of(object: &Value) -> Option<u64> {
    match object.get("metadata")?.get("resourceVersion")? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The identity an object claims, read from its raw document.
pub fn key_of(kind: Kind, object: &Value) -> ResourceKey {
    let meta = object.get("metadata");
    let text = |field: &str| {
        meta.and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    ResourceKey {
        kind,
        namespace: kind
            .is_namespaced()
            .then(|| text("namespace").unwrap_or_else(|| "default".into())),
        name: text("name").unwrap_or_default(),
    }
}

/// Decodes one object of kind `expected` (filling in `apiVersion` and `kind` when the
/// server left them out, as Kubernetes does for list items). `url` names the request in
/// errors.
pub fn decode_object(expected: Kind, mut object: Value, url: &str) -> Result<Resource, Error> {
    let Value::Object(map) = &mut object else {
        return Err(Error::Protocol {
            url: url.into(),
            message: format!("expected a {} object, got {object}", expected.kind_name()),
        });
    };
    map.entry("apiVersion")
        .or_insert_with(|| expected.api_version().into());
    map.entry("kind")
        .or_insert_with(|| expected.kind_name().into());
    let claimed = (
        map.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
        map.get("kind").and_then(Value::as_str).unwrap_or(""),
    );
    if Kind::from_api(claimed.0, claimed.1) != Some(expected) {
        return Err(Error::Protocol {
            url: url.into(),
            message: format!(
                "expected {}/{}, got {}/{}",
                expected.api_version(),
                expected.kind_name(),
                claimed.0,
                claimed.1
            ),
        });
    }
    let text = object.to_string();
    match load_str(url, &text) {
        Ok(mut loaded) if loaded.len() == 1 => Ok(loaded.remove(0).resource),
        Ok(loaded) => Err(Error::Protocol {
            url: url.into(),
            message: format!("expected one object, got {}", loaded.len()),
        }),
        Err(errors) => Err(Error::Invalid {
            key: key_of(expected, &object),
            revision: revision_of(&object),
            deleted: false,
            errors,
        }),
    }
}

/// The document to send for `resource`: exactly what it holds, as JSON.
pub fn encode(resource: &Resource) -> Vec<u8> {
    resource.to_document().to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_with_or_without_type_fields() {
        let with = json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "a", "resourceVersion": "42", "uid": "u",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"selector": "app == 'x'"}});
        let r = decode_object(Kind::GlobalNetworkPolicy, with.clone(), "t").expect("decodes");
        assert_eq!(r.meta().name, "a");
        assert_eq!(r.meta().resource_version.as_deref(), Some("42"));
        assert_eq!(revision_of(&with), Some(42));

        let bare = json!({"metadata": {"name": "p", "namespace": "shop"},
            "spec": {"podSelector": {}}});
        let r = decode_object(Kind::KubernetesNetworkPolicy, bare, "t").expect("decodes");
        assert_eq!(r.kind(), Kind::KubernetesNetworkPolicy);
    }

    #[test]
    fn wrong_kind_and_invalid_objects_are_errors() {
        let np = json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "a", "namespace": "x"}});
        assert!(matches!(
            decode_object(Kind::KubernetesNetworkPolicy, np, "t"),
            Err(Error::Protocol { .. })
        ));
        let bad = json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "a", "namespace": "x", "resourceVersion": "7"},
            "spec": {"selector": "app =="}});
        match decode_object(Kind::NetworkPolicy, bad, "t") {
            Err(Error::Invalid { key, revision, .. }) => {
                assert_eq!(key.namespace.as_deref(), Some("x"));
                assert_eq!(key.name, "a");
                assert_eq!(revision, Some(7));
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
