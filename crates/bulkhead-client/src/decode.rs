//! Objects from the server into typed resources, with the same loader (defaulting and
//! validation) the CLI uses on files.

use bulkhead_api::{Kind, Resource, ResourceKey, load_str};
use serde_json::Value;

use crate::List;
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

/// A list response, decoded one item at a time: only one item's JSON tree exists at any
/// moment, so that a list of 50,000 objects costs its text and its resources, not also a
/// tree of the whole answer (which took an agent's first sync to 800 MiB).
pub fn decode_list(kind: Kind, body: &str, url: &str) -> Result<List, Error> {
    let protocol = |message: String| Error::Protocol {
        url: url.into(),
        message,
    };
    let mut de = serde_json::Deserializer::from_str(body);
    let mut out = ListOut {
        kind,
        url,
        list: List {
            items: Vec::new(),
            invalid: Vec::new(),
            revision: 0,
        },
        failed: None,
    };
    serde::de::DeserializeSeed::deserialize(&mut out, &mut de)
        .and_then(|()| de.end())
        .map_err(|e| protocol(format!("not a list: {e}")))?;
    match out.failed {
        Some(e) => Err(e),
        None => Ok(out.list),
    }
}

/// The state of [`decode_list`]: what decoded so far, and the first error that is not an
/// invalid object (which ends the list's use, but not its parsing).
struct ListOut<'a> {
    kind: Kind,
    url: &'a str,
    list: List,
    failed: Option<Error>,
}

impl<'de> serde::de::DeserializeSeed<'de> for &mut ListOut<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut ListOut<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "items" => map.next_value_seed(Items(&mut *self))?,
                "metadata" => {
                    let meta: Value = map.next_value()?;
                    let list = serde_json::json!({ "metadata": meta });
                    self.list.revision = revision_of(&list).unwrap_or(0);
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The `items` of a list (`null` is none).
struct Items<'a, 'b>(&'a mut ListOut<'b>);

impl<'de> serde::de::DeserializeSeed<'de> for Items<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Items<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("items: a list")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        while let Some(item) = seq.next_element::<Value>()? {
            if out.failed.is_some() {
                continue;
            }
            match decode_object(out.kind, item, out.url) {
                Ok(r) => out.list.items.push(r),
                Err(Error::Invalid { key, errors, .. }) => out.list.invalid.push((key, errors)),
                Err(e) => out.failed = Some(e),
            }
        }
        Ok(())
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

    #[test]
    fn lists_decode_item_by_item_with_their_revision() {
        let body = json!({"kind": "GlobalNetworkPolicyList", "apiVersion": "projectcalico.org/v3",
        "metadata": {"resourceVersion": "17"},
        "items": [
            {"metadata": {"name": "a"}, "spec": {"selector": "all()"}},
            {"metadata": {"name": "b", "resourceVersion": "9"}, "spec": {"selector": "app =="}},
            {"metadata": {"name": "c"}, "spec": {"order": 3}}
        ]})
        .to_string();
        let list = decode_list(Kind::GlobalNetworkPolicy, &body, "t").expect("decodes");
        assert_eq!(list.revision, 17);
        let names: Vec<&str> = list.items.iter().map(|r| r.meta().name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(list.invalid.len(), 1);
        assert_eq!(list.invalid[0].0.name, "b");

        let empty = r#"{"metadata": {"resourceVersion": "3"}, "items": null}"#;
        let list = decode_list(Kind::Tier, empty, "t").expect("decodes");
        assert!(list.items.is_empty() && list.revision == 3);
    }

    #[test]
    fn a_list_that_is_not_one_is_a_protocol_error() {
        for body in [
            r#"{"items": {"a": 1}}"#,
            r#"[1, 2]"#,
            r#"{"items": [] } trailing"#,
            r#"{"items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}]}"#,
        ] {
            assert!(
                matches!(
                    decode_list(Kind::GlobalNetworkPolicy, body, "t"),
                    Err(Error::Protocol { .. })
                ),
                "{body}"
            );
        }
    }
}
