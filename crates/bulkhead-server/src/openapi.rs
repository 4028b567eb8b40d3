//! `/openapi.json`: an OpenAPI 3.0 document generated from the kind table, so that it cannot
//! drift from the paths the router serves. Object bodies are described down to the envelope
//! (apiVersion, kind, metadata, spec); the field-level schema is the `bulkhead-api` types,
//! and the server's 422 answers name the exact field.

use bulkhead_api::Kind;
use serde_json::{Map, Value, json};

use crate::kinds::KindInfo;

fn schema_name(kind: Kind) -> String {
    kind.display_name().to_string()
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `oks`: the success codes, each answering with `schema`; `errors`: codes answering with
/// a `Status`.
fn responses(oks: &[&str], schema: Value, errors: &[u16]) -> Value {
    let mut r = Map::new();
    for ok in oks {
        r.insert(
            ok.to_string(),
            json!({"description": "OK", "content": {"application/json": {"schema": schema}}}),
        );
    }
    for code in errors {
        r.insert(
            code.to_string(),
            json!({"description": "Status", "content": {"application/json": {"schema": reference("Status")}}}),
        );
    }
    Value::Object(r)
}

/// A write's `responses`, whose successes also declare the `Warning` header: one per
/// field accepted but not enforced (`bulkhead_api::advisories`).
fn warned(mut responses: Value) -> Value {
    if let Some(map) = responses.as_object_mut() {
        for (code, response) in map.iter_mut() {
            if code.starts_with('2') {
                response["headers"] = json!({"Warning": {
                    "description": "299 - \"<field path>: <what is not enforced>\", once per such field",
                    "schema": {"type": "string"},
                }});
            }
        }
    }
    responses
}

fn body(kind: Kind) -> Value {
    let schema = reference(&schema_name(kind));
    json!({"required": true, "content": {
        "application/json": {"schema": schema},
        "application/yaml": {"schema": schema},
    }})
}

/// A string parameter.
fn param(name: &str, location: &str, description: &str) -> Value {
    typed_param(name, location, description, json!({"type": "string"}))
}

/// A parameter whose values `schema` describes.
fn typed_param(name: &str, location: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": location, "required": location == "path",
        "description": description, "schema": schema})
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for kind in Kind::ALL {
        let info = KindInfo::of(kind);
        let name = schema_name(kind);
        schemas.insert(
            name.clone(),
            json!({
                "type": "object",
                "required": ["apiVersion", "kind", "metadata"],
                "properties": {
                    "apiVersion": {"type": "string", "enum": [kind.api_version()]},
                    "kind": {"type": "string", "enum": [kind.kind_name()]},
                    "metadata": reference("ObjectMeta"),
                    "spec": {"type": "object", "description": "as Calico / Kubernetes define it; unknown fields are rejected"},
                },
            }),
        );
        schemas.insert(
            format!("{name}List"),
            json!({
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string", "enum": [info.list_kind()]},
                    "metadata": {"type": "object", "properties": {"resourceVersion": {"type": "string"}}},
                    "items": {"type": "array", "items": reference(&name)},
                },
            }),
        );
        let ns_param = param("namespace", "path", "namespace");
        let list_params = vec![
            param(
                "labelSelector",
                "query",
                "Calico selector, e.g. app == 'web'",
            ),
            typed_param(
                "watch",
                "query",
                "true (or 1): stream changes as newline-delimited JSON events",
                json!({"type": "boolean"}),
            ),
            param(
                "resourceVersion",
                "query",
                "watch: deliver changes after this revision",
            ),
            typed_param(
                "allowWatchBookmarks",
                "query",
                "watch: send BOOKMARK events",
                json!({"type": "boolean"}),
            ),
            typed_param(
                "timeoutSeconds",
                "query",
                "watch: end the stream after this long",
                json!({"type": "integer", "minimum": 0}),
            ),
        ];
        let list_op = |scope: &str| {
            json!({
                "operationId": format!("list{name}{scope}"),
                "tags": [name],
                "parameters": list_params,
                "responses": responses(&["200"], reference(&format!("{name}List")), &[400, 401, 403]),
            })
        };
        if kind.is_namespaced() {
            paths.insert(
                info.collection_path(None),
                json!({"get": list_op("AllNamespaces")}),
            );
        }
        let collection = if kind.is_namespaced() {
            info.collection_path(Some("{namespace}"))
        } else {
            info.collection_path(None)
        };
        let scope_params: Vec<Value> = if kind.is_namespaced() {
            vec![ns_param.clone()]
        } else {
            vec![]
        };
        paths.insert(
            collection.clone(),
            json!({
                "parameters": scope_params,
                "get": list_op(""),
                "post": {
                    "operationId": format!("create{name}"),
                    "tags": [name],
                    "requestBody": body(kind),
                    "responses": warned(responses(&["201"], reference(&name), &[400, 401, 403, 409, 413, 422])),
                },
            }),
        );
        let mut object_params = scope_params.clone();
        object_params.push(param("name", "path", "object name"));
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "parameters": object_params,
                "get": {"operationId": format!("read{name}"), "tags": [name],
                    "responses": responses(&["200"], reference(&name), &[401, 403, 404])},
                "put": {"operationId": format!("replace{name}"), "tags": [name],
                    "description": "replace (200), or create if absent (201); 409 if metadata.resourceVersion is set and stale",
                    "requestBody": body(kind),
                    "responses": warned(responses(&["200", "201"], reference(&name), &[400, 401, 403, 409, 413, 422]))},
                "patch": {"operationId": format!("patch{name}"), "tags": [name],
                    "requestBody": {"required": true, "content": {"application/merge-patch+json": {"schema": {"type": "object"}}}},
                    "responses": warned(responses(&["200"], reference(&name), &[400, 401, 403, 404, 409, 413, 422]))},
                "delete": {"operationId": format!("delete{name}"), "tags": [name],
                    "responses": responses(&["200"], reference(&name), &[401, 403, 404])},
            }),
        );
    }
    schemas.insert(
        "ObjectMeta".into(),
        json!({"type": "object", "properties": {
            "name": {"type": "string"}, "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "resourceVersion": {"type": "string", "readOnly": true},
            "uid": {"type": "string", "readOnly": true},
            "creationTimestamp": {"type": "string", "format": "date-time", "readOnly": true},
            "generation": {"type": "integer", "readOnly": true},
        }}),
    );
    schemas.insert(
        "Status".into(),
        json!({"type": "object", "properties": {
            "kind": {"type": "string", "enum": ["Status"]},
            "apiVersion": {"type": "string"},
            "status": {"type": "string"},
            "code": {"type": "integer"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "details": {"type": "object", "properties": {
                "kind": {"type": "string"}, "name": {"type": "string"},
                "causes": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "message": {"type": "string"}}}},
            }},
        }}),
    );
    paths.insert(
        "/bulkhead/v1/audit".into(),
        json!({"get": {
            "operationId": "listAuditRecords",
            "parameters": [
                param("since", "query", "RFC 3339 time"),
                param("user", "query", "user name"),
                param("kind", "query", "kind"),
                param("tier", "query", "tier"),
                param("type", "query", "change, denied or alert"),
                typed_param(
                    "limit",
                    "query",
                    "at most this many records (default 1000)",
                    json!({"type": "integer", "minimum": 0}),
                ),
            ],
            "responses": responses(&["200"], json!({"type": "object"}), &[400, 401, 403]),
        }}),
    );
    paths.insert(
        "/bulkhead/v1/whoami".into(),
        json!({"get": {"operationId": "whoAmI", "responses": responses(&["200"], json!({"type": "object"}), &[401])}}),
    );
    paths.insert(
        "/healthz".into(),
        json!({"get": {"operationId": "healthz", "security": [], "responses": {"200": {"description": "ok"}, "503": {"description": "unhealthy"}}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"operationId": "metrics", "security": [], "responses": {"200": {"description": "Prometheus text"}}}}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Bulkhead API", "version": env!("CARGO_PKG_VERSION"),
            "description": "See docs/api.md: Kubernetes API conventions, Calico v3 and Kubernetes resources."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_has_paths_and_a_schema() {
        let doc = super::document();
        for kind in bulkhead_api::Kind::ALL {
            let info = crate::kinds::KindInfo::of(kind);
            let ns = kind.is_namespaced().then_some("{namespace}");
            assert!(
                doc["paths"][info.collection_path(ns)]["post"].is_object(),
                "{kind}"
            );
            assert!(doc["components"]["schemas"][kind.display_name()].is_object());
        }
    }
}
