//! Writes: create, replace, patch and delete, each compare-and-swap on the key's
//! revision, then audited.

use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::Response;
use bulkhead_store::{Expect, KeyValue, Store, StoreError};
use serde_json::Value;

use super::read::not_found;
use super::{Call, Change, MAX_RETRIES, display_name, namespace_of, value_response, written};
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::objects::{
    self, ServerMeta, Summary, admit, served_value, stored_document, tier_of, tier_of_doc,
};
use crate::rbac::Verb;
use crate::util::{rfc3339, uuid_v4};

/// The server metadata for a new object.
fn new_meta() -> Result<ServerMeta, ApiError> {
    Ok(ServerMeta {
        uid: uuid_v4().map_err(|e| ApiError::internal(format!("/dev/urandom: {e}")))?,
        created: rfc3339(SystemTime::now()),
        generation: 1,
    })
}

fn encode(doc: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(doc).map_err(|e| ApiError::internal(format!("encoding: {e}")))
}

pub(super) async fn create(call: &Call, value: Value) -> Result<Response, ApiError> {
    call.authorize_some(Verb::Create).await?;
    let info = call.target.info;
    let resource = admit(&call.target, value)?;
    let ns = namespace_of(&resource);
    let name = resource.meta().name.clone();
    call.authorize(
        Verb::Create,
        ns.as_deref(),
        &name,
        tier_of(&resource).as_deref(),
    )
    .await?;
    let doc = stored_document(&resource, &new_meta()?, None);
    let key = info.key(ns.as_deref(), &name);
    let revision = match call
        .state
        .store
        .put(&key, encode(&doc)?, Expect::Absent)
        .await
    {
        Ok(r) => r,
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::already_exists(format!(
                "{} {:?} already exists",
                info.kind.kind_name(),
                display_name(ns.as_deref(), &name)
            ))
            .about(info.kind.kind_name(), &name));
        }
        Err(e) => return Err(e.into()),
    };
    let mut served = doc;
    objects::set_resource_version(&mut served, revision);
    call.audit_change(Change {
        verb: Verb::Create,
        outcome: "created",
        code: 201,
        namespace: ns.as_deref(),
        name: &name,
        revision,
        before: None,
        after: Some(&served),
    })
    .await?;
    written(StatusCode::CREATED, &served, &resource)
}

/// The `metadata.resourceVersion` a body asks for, as a precondition.
fn precondition(value: &Value) -> Result<Option<u64>, ApiError> {
    match value.pointer("/metadata/resourceVersion") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion {s:?} is not a revision number"
            ))
        }),
        Some(other) => Err(ApiError::bad_request(format!(
            "metadata.resourceVersion must be a string, not {other}"
        ))),
    }
}

fn stale(
    info: KindInfo,
    ns: Option<&str>,
    name: &str,
    wanted: u64,
    current: Option<&KeyValue>,
) -> ApiError {
    let now = match current {
        Some(kv) => format!("it is now at {}", kv.mod_revision),
        None => "it does not exist".to_string(),
    };
    ApiError::conflict(format!(
        "Operation cannot be fulfilled on {} {:?}: the object has been modified; resourceVersion {wanted} is stale ({now}): read it again and retry",
        info.kind.kind_name(),
        display_name(ns, name)
    ))
    .about(info.kind.kind_name(), name)
}

pub(super) async fn replace(call: &Call, value: Value) -> Result<Response, ApiError> {
    call.authorize_some(Verb::Update).await?;
    let info = call.target.info;
    let wanted = precondition(&value)?;
    let resource = admit(&call.target, value)?;
    let ns = namespace_of(&resource);
    let name = resource.meta().name.clone();
    let new_tier = tier_of(&resource);
    let key = info.key(ns.as_deref(), &name);
    for _ in 0..MAX_RETRIES {
        let current = call.state.store.get(&key).await?;
        if let Some(want) = wanted
            && current.as_ref().map(|kv| kv.mod_revision) != Some(want)
        {
            return Err(stale(info, ns.as_deref(), &name, want, current.as_ref()));
        }
        let before = match &current {
            Some(kv) => Some(served_value(&kv.value, kv.mod_revision)?),
            None => None,
        };
        let verb = if current.is_some() {
            Verb::Update
        } else {
            Verb::Create
        };
        call.authorize(verb, ns.as_deref(), &name, new_tier.as_deref())
            .await?;
        if let Some(before) = &before {
            let old_tier = tier_of_doc(info.kind, before);
            if old_tier != new_tier {
                call.authorize(verb, ns.as_deref(), &name, old_tier.as_deref())
                    .await?;
            }
        }
        let meta = match before.as_ref().and_then(ServerMeta::of) {
            Some(meta) => meta,
            None => new_meta()?,
        };
        let doc = stored_document(&resource, &meta, before.as_ref());
        let expect = match &current {
            Some(kv) => Expect::ModRevision(kv.mod_revision),
            None => Expect::Absent,
        };
        let revision = match call.state.store.put(&key, encode(&doc)?, expect).await {
            Ok(r) => r,
            Err(StoreError::Conflict { current: now, .. }) => {
                if let Some(want) = wanted {
                    return Err(stale(info, ns.as_deref(), &name, want, now.as_deref()));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut served = doc;
        objects::set_resource_version(&mut served, revision);
        let (outcome, code) = if before.is_some() {
            ("updated", StatusCode::OK)
        } else {
            ("created", StatusCode::CREATED)
        };
        call.audit_change(Change {
            verb,
            outcome,
            code: code.as_u16(),
            namespace: ns.as_deref(),
            name: &name,
            revision,
            before: before.as_ref(),
            after: Some(&served),
        })
        .await?;
        return written(code, &served, &resource);
    }
    Err(ApiError::conflict(format!(
        "{} {:?} changed {MAX_RETRIES} times while it was being replaced: retry",
        info.kind.kind_name(),
        display_name(ns.as_deref(), &name)
    )))
}

pub(super) async fn patch(call: &Call, patch: Value) -> Result<Response, ApiError> {
    call.authorize_some(Verb::Patch).await?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
    }
    let info = call.target.info;
    let ns = call.target.namespace.as_deref();
    let name = call.target.name.clone().unwrap_or_default();
    let wanted = precondition(&patch)?;
    let key = info.key(ns, &name);
    for _ in 0..MAX_RETRIES {
        let Some(current) = call.state.store.get(&key).await? else {
            return Err(not_found(info, ns, &name));
        };
        if let Some(want) = wanted
            && current.mod_revision != want
        {
            return Err(stale(info, ns, &name, want, Some(&current)));
        }
        let before = served_value(&current.value, current.mod_revision)?;
        let old_tier = tier_of_doc(info.kind, &before);
        let mut patched = before.clone();
        objects::merge_patch(&mut patched, &patch);
        let resource = admit(&call.target, patched)?;
        let new_tier = tier_of(&resource);
        call.authorize(Verb::Patch, ns, &name, new_tier.as_deref())
            .await?;
        if old_tier != new_tier {
            call.authorize(Verb::Patch, ns, &name, old_tier.as_deref())
                .await?;
        }
        let meta = match ServerMeta::of(&before) {
            Some(meta) => meta,
            None => new_meta()?,
        };
        let doc = stored_document(&resource, &meta, Some(&before));
        let revision = match call
            .state
            .store
            .put(
                &key,
                encode(&doc)?,
                Expect::ModRevision(current.mod_revision),
            )
            .await
        {
            Ok(r) => r,
            Err(StoreError::Conflict { current: now, .. }) => {
                if let Some(want) = wanted {
                    return Err(stale(info, ns, &name, want, now.as_deref()));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut served = doc;
        objects::set_resource_version(&mut served, revision);
        call.audit_change(Change {
            verb: Verb::Patch,
            outcome: "updated",
            code: 200,
            namespace: ns,
            name: &name,
            revision,
            before: Some(&before),
            after: Some(&served),
        })
        .await?;
        return written(StatusCode::OK, &served, &resource);
    }
    Err(ApiError::conflict(format!(
        "{} {:?} changed {MAX_RETRIES} times while it was being patched: retry",
        info.kind.kind_name(),
        display_name(ns, &name)
    )))
}

pub(super) async fn delete(call: &Call) -> Result<Response, ApiError> {
    call.authorize_some(Verb::Delete).await?;
    let info = call.target.info;
    let ns = call.target.namespace.as_deref();
    let name = call.target.name.clone().unwrap_or_default();
    let key = info.key(ns, &name);
    for _ in 0..MAX_RETRIES {
        let Some(current) = call.state.store.get(&key).await? else {
            return Err(not_found(info, ns, &name));
        };
        let summary = Summary::of(&current.value)?;
        call.authorize(Verb::Delete, ns, &name, summary.tier(info.kind).as_deref())
            .await?;
        let revision = match call
            .state
            .store
            .delete(&key, Expect::ModRevision(current.mod_revision))
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => return Err(not_found(info, ns, &name)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let before = served_value(&current.value, current.mod_revision)?;
        call.audit_change(Change {
            verb: Verb::Delete,
            outcome: "deleted",
            code: 200,
            namespace: ns,
            name: &name,
            revision,
            before: Some(&before),
            after: None,
        })
        .await?;
        // The deleted object carries the delete's revision, as its DELETED watch event does,
        // so a client can watch on from exactly here.
        let mut gone = before;
        objects::set_resource_version(&mut gone, revision);
        return value_response(StatusCode::OK, &gone);
    }
    Err(ApiError::conflict(format!(
        "{} {:?} changed {MAX_RETRIES} times while it was being deleted: retry",
        info.kind.kind_name(),
        display_name(ns, &name)
    )))
}
