//! The resource endpoints: get, list, create, replace, patch and delete for every kind, each
//! going authenticate (middleware) → authorize → validate → store → audit.
//!
//! Writes are compare-and-swap on the key's `mod_revision`: a replace whose body names a
//! `resourceVersion` must match it (else 409 Conflict); one that does not is retried on a
//! concurrent change, so the last writer wins without ever losing the uid or creation time.

use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bulkhead_api::Kind;
use bulkhead_selector::Selector;
use bulkhead_store::{Expect, KeyValue, Store, StoreError};
use futures_util::StreamExt;
use serde_json::Value;

use crate::audit::AuditEntry;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::kinds::{KindInfo, Target};
use crate::metrics::VerbLabel;
use crate::objects::{
    self, Format, ServerMeta, Summary, admit, served_bytes, served_value, stored_document, tier_of,
    tier_of_doc,
};
use crate::rbac::{self, Verb, rule_kind_name};
use crate::server::{AppState, RequestId};
use crate::util::{rfc3339, uuid_v4};

/// How often a write that lost a race to another writer is retried before giving up.
const MAX_RETRIES: usize = 16;

/// Everything a resource request carries.
pub struct Call {
    /// Shared state.
    pub state: AppState,
    /// The authenticated caller.
    pub caller: Caller,
    /// The request id.
    pub request_id: String,
    /// What the path names.
    pub target: Target,
}

impl Call {
    fn kind(&self) -> Kind {
        self.target.info.kind
    }

    fn rule_kind(&self) -> &'static str {
        rule_kind_name(self.kind())
    }

    /// 403 unless the caller may `verb` some objects of this kind (before any body work).
    pub async fn authorize_some(&self, verb: Verb) -> Result<(), ApiError> {
        if self.caller.allows_some(verb, self.rule_kind()) {
            return Ok(());
        }
        let request = rbac::Request {
            verb,
            kind: self.rule_kind(),
            namespace: self.target.namespace.as_deref(),
            tier: None,
        };
        Err(self.deny(&request, self.target.name.as_deref()).await)
    }

    /// 403 unless some rule covers `verb` on this kind in `namespace` and `tier`.
    async fn authorize(
        &self,
        verb: Verb,
        namespace: Option<&str>,
        name: &str,
        tier: Option<&str>,
    ) -> Result<(), ApiError> {
        let request = rbac::Request {
            verb,
            kind: self.rule_kind(),
            namespace: if self.kind().is_namespaced() {
                namespace
            } else {
                None
            },
            tier,
        };
        if self.caller.allows(&request) {
            Ok(())
        } else {
            Err(self.deny(&request, Some(name)).await)
        }
    }

    /// Builds the 403 and audits it (with an alert for writes on a protected tier).
    async fn deny(&self, request: &rbac::Request<'_>, name: Option<&str>) -> ApiError {
        let error = self.caller.forbidden(request);
        let entry = AuditEntry {
            record_type: "denied",
            user: self.caller.identity.name.clone(),
            verb: request.verb.as_str().into(),
            kind: request.kind.into(),
            namespace: request.namespace.map(str::to_string),
            name: name.map(str::to_string),
            tier: request.tier.map(str::to_string),
            outcome: "forbidden".into(),
            code: error.code.as_u16(),
            request_id: self.request_id.clone(),
            message: Some(error.message.clone()),
            ..AuditEntry::default()
        };
        let mut entries = vec![entry.clone()];
        if request.verb.is_write()
            && let Some(tier) = request.tier
            && self.caller.rbac().is_protected(tier)
        {
            entries.push(AuditEntry {
                record_type: "alert",
                outcome: "protected-tier".into(),
                message: Some(format!(
                    "denied {} of {} in protected tier {tier:?} by {:?}",
                    request.verb, request.kind, self.caller.identity.name
                )),
                ..entry
            });
        }
        if let Err(e) = self.state.audit.append(entries).await {
            tracing::error!(error = %e, "cannot audit a denied request");
        }
        error
    }

    /// Appends the change record (and an alert if a protected tier is involved).
    async fn audit_change(&self, change: Change<'_>) -> Result<(), ApiError> {
        let kind = self.kind();
        let before_tier = change.before.and_then(|d| tier_of_doc(kind, d));
        let after_tier = change.after.and_then(|d| tier_of_doc(kind, d));
        let entry = AuditEntry {
            record_type: "change",
            user: self.caller.identity.name.clone(),
            verb: change.verb.as_str().into(),
            kind: self.rule_kind().into(),
            namespace: change.namespace.map(str::to_string),
            name: Some(change.name.to_string()),
            tier: after_tier.clone().or(before_tier.clone()),
            outcome: change.outcome.into(),
            code: change.code,
            request_id: self.request_id.clone(),
            revision: Some(change.revision),
            message: None,
            before: change.before.cloned(),
            after: change.after.cloned(),
        };
        let rbac = self.caller.rbac();
        let protected: Vec<String> = [before_tier, after_tier]
            .into_iter()
            .flatten()
            .filter(|t| rbac.is_protected(t))
            .fold(Vec::new(), |mut acc, t| {
                if !acc.contains(&t) {
                    acc.push(t);
                }
                acc
            });
        let mut entries = vec![];
        if !protected.is_empty() {
            entries.push(AuditEntry {
                record_type: "alert",
                outcome: "protected-tier".into(),
                message: Some(format!(
                    "{} {} {} in protected tier {} by {:?}",
                    change.outcome,
                    self.rule_kind(),
                    change.name,
                    protected.join(", "),
                    self.caller.identity.name
                )),
                before: None,
                after: None,
                ..entry.clone()
            });
        }
        entries.insert(0, entry);
        self.state.audit.append(entries).await.map_err(|e| {
            ApiError::internal(format!(
                "the change was stored (resourceVersion {}) but could not be audited: {e}",
                change.revision
            ))
        })
    }
}

/// One change to audit.
struct Change<'a> {
    verb: Verb,
    outcome: &'static str,
    code: u16,
    namespace: Option<&'a str>,
    name: &'a str,
    revision: u64,
    before: Option<&'a Value>,
    after: Option<&'a Value>,
}

/// Query parameters of resource requests.
#[derive(Debug, Default)]
pub struct Params {
    /// `watch=1|true`.
    pub watch: bool,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `labelSelector` (Calico syntax).
    pub label_selector: Option<String>,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
}

impl Params {
    fn parse(uri: &Uri) -> Result<Params, ApiError> {
        let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        let mut p = Params::default();
        let flag = |v: &str| matches!(v, "1" | "true" | "True" | "TRUE");
        for (k, v) in query.0 {
            match k.as_str() {
                "watch" => p.watch = flag(&v),
                "resourceVersion" => p.resource_version = Some(v).filter(|v| !v.is_empty()),
                "labelSelector" => p.label_selector = Some(v),
                "allowWatchBookmarks" => p.bookmarks = flag(&v),
                "timeoutSeconds" => {
                    p.timeout_seconds = Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("timeoutSeconds {v:?} is not a number"))
                    })?)
                }
                "fieldSelector" | "limit" | "continue" | "resourceVersionMatch" => {
                    return Err(ApiError::bad_request(format!(
                        "the query parameter {k} is not supported"
                    )));
                }
                // Unknown parameters are ignored, as Kubernetes does (pretty, dryRun...).
                _ => {}
            }
        }
        Ok(p)
    }

    /// The parsed label selector; 400 if it does not parse.
    pub fn selector(&self) -> Result<Option<Selector>, ApiError> {
        match &self.label_selector {
            None => Ok(None),
            Some(text) => Selector::parse(text).map(Some).map_err(|e| {
                ApiError::bad_request(format!(
                    "labelSelector {text:?} is not a valid selector: {e}"
                ))
            }),
        }
    }

    /// `resourceVersion` as a revision; 400 if it is not a number.
    pub fn revision(&self) -> Result<Option<u64>, ApiError> {
        self.resource_version
            .as_deref()
            .map(|rv| {
                rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "resourceVersion {rv:?} is not a revision number"
                    ))
                })
            })
            .transpose()
    }
}

/// Dispatches a request under `/api` or `/apis`.
pub async fn resource(
    state: AppState,
    caller: Caller,
    request_id: RequestId,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let target = match Target::parse(uri.path()) {
        Ok(t) => t,
        Err(crate::kinds::PathError::NotFound(m)) => return ApiError::not_found(m).into_response(),
    };
    let call = Call {
        state,
        caller,
        request_id: request_id.0,
        target,
    };
    let (verb, result) = dispatch(&call, &method, &uri, &headers, body).await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(VerbLabel(verb));
    response
}

async fn dispatch(
    call: &Call,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> (&'static str, Result<Response, ApiError>) {
    let params = match Params::parse(uri) {
        Ok(p) => p,
        Err(e) => return ("other", Err(e)),
    };
    let is_object = call.target.name.is_some();
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let limit = call.state.config.body_limit;
    match (method.as_str(), is_object) {
        ("GET", false) if params.watch => ("watch", crate::watch::watch(call, &params).await),
        ("GET", false) => ("list", list(call, &params).await),
        ("GET", true) => ("get", get(call).await),
        ("POST", false) => (
            "create",
            async {
                let value = read_value(body, content_type, limit).await?;
                create(call, value).await
            }
            .await,
        ),
        ("PUT", true) => (
            "update",
            async {
                let value = read_value(body, content_type, limit).await?;
                replace(call, value).await
            }
            .await,
        ),
        ("PATCH", true) => (
            "patch",
            async {
                let value = read_value(body, content_type, limit).await?;
                patch(call, value).await
            }
            .await,
        ),
        ("DELETE", true) => ("delete", delete(call).await),
        (m, _) => (
            "other",
            Err(ApiError::method_not_allowed(format!(
                "{m} is not supported on {}",
                uri.path()
            ))),
        ),
    }
}

/// Reads at most `limit` bytes of body (413 beyond) and parses it.
async fn read_value(
    body: Body,
    content_type: Option<&str>,
    limit: usize,
) -> Result<Value, ApiError> {
    let format = Format::from_content_type(content_type)?;
    let bytes = read_limited(body, limit).await?;
    objects::parse_body(&bytes, format)
}

/// Collects a body, failing with 413 as soon as it passes `limit`.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::too_large(format!("the request body is larger than {limit} bytes"));
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

fn json_response(code: StatusCode, body: Vec<u8>) -> Response {
    (code, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn value_response(code: StatusCode, value: &Value) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_response(code, body))
}

/// The namespace a write lands in: the path's, else the body's (defaulted).
fn namespace_of(resource: &bulkhead_api::Resource) -> Option<String> {
    resource.kind().is_namespaced().then(|| {
        resource
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    })
}

/// The object's name for messages.
fn display_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

async fn get(call: &Call) -> Result<Response, ApiError> {
    call.authorize_some(Verb::Get).await?;
    let info = call.target.info;
    let ns = call.target.namespace.as_deref();
    let name = call.target.name.as_deref().unwrap_or_default();
    let Some(kv) = call.state.store.get(&info.key(ns, name)).await? else {
        return Err(not_found(info, ns, name));
    };
    let summary = Summary::of(&kv.value)?;
    call.authorize(Verb::Get, ns, name, summary.tier(info.kind).as_deref())
        .await?;
    Ok(json_response(
        StatusCode::OK,
        served_bytes(info, &kv.value, kv.mod_revision)?,
    ))
}

fn not_found(info: KindInfo, ns: Option<&str>, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "{} {:?} not found",
        info.kind.kind_name(),
        display_name(ns, name)
    ))
    .about(info.kind.kind_name(), name)
}

/// Decides, per stored object, whether a list or watch shows it: the label selector and the
/// caller's rules for its namespace and tier.
pub struct Filter {
    caller: Caller,
    verb: Verb,
    kind: Kind,
    selector: Option<Selector>,
    /// The caller may see every object: skip the per-object RBAC check.
    everything: bool,
}

impl Filter {
    /// A filter for `verb` on the call's kind.
    pub fn new(call: &Call, verb: Verb, selector: Option<Selector>) -> Filter {
        let kind = call.target.info.kind;
        let everything = call.caller.allows(&rbac::Request {
            verb,
            kind: rule_kind_name(kind),
            namespace: None,
            tier: None,
        });
        Filter {
            caller: call.caller.clone(),
            verb,
            kind,
            selector,
            everything,
        }
    }

    /// True when every object passes (no selector, no per-object rules).
    pub fn passes_everything(&self) -> bool {
        self.everything && self.selector.is_none()
    }

    /// True when the object `stored` passes.
    pub fn admits(&self, stored: &[u8]) -> Result<bool, ApiError> {
        if self.passes_everything() {
            return Ok(true);
        }
        let summary = Summary::of(stored)?;
        if let Some(selector) = &self.selector
            && !selector.matches(&summary.metadata.labels)
        {
            return Ok(false);
        }
        Ok(self.everything
            || self.caller.allows(&rbac::Request {
                verb: self.verb,
                kind: rule_kind_name(self.kind),
                namespace: summary.metadata.namespace.as_deref(),
                tier: summary.tier(self.kind).as_deref(),
            }))
    }
}

async fn list(call: &Call, params: &Params) -> Result<Response, ApiError> {
    call.authorize_some(Verb::List).await?;
    let selector = params.selector()?;
    let info = call.target.info;
    let (items, revision) = call
        .state
        .store
        .list(&info.prefix(call.target.namespace.as_deref()))
        .await?;
    let filter = Filter::new(call, Verb::List, selector);
    let head = format!(
        "{{\"apiVersion\":\"{}\",\"kind\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{revision}\"}},\"items\":[",
        info.kind.api_version(),
        info.list_kind()
    );
    let mut body =
        Vec::with_capacity(head.len() + items.iter().map(|kv| kv.value.len() + 32).sum::<usize>());
    body.extend_from_slice(head.as_bytes());
    let mut first = true;
    for kv in &items {
        if !filter.admits(&kv.value)? {
            continue;
        }
        if !first {
            body.push(b',');
        }
        first = false;
        body.extend_from_slice(&served_bytes(info, &kv.value, kv.mod_revision)?);
    }
    body.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, body))
}

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

async fn create(call: &Call, value: Value) -> Result<Response, ApiError> {
    call.authorize_some(Verb::Create).await?;
    let info = call.target.info;
    if info.kind.is_namespaced() && call.target.namespace.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "create {} in a namespace: POST to {}",
            info.kind.kind_name(),
            info.collection_path(Some("<namespace>"))
        )));
    }
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
    value_response(StatusCode::CREATED, &served)
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

async fn replace(call: &Call, value: Value) -> Result<Response, ApiError> {
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
        return value_response(code, &served);
    }
    Err(ApiError::conflict(format!(
        "{} {:?} changed {MAX_RETRIES} times while it was being replaced: retry",
        info.kind.kind_name(),
        display_name(ns.as_deref(), &name)
    )))
}

async fn patch(call: &Call, patch: Value) -> Result<Response, ApiError> {
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
        return value_response(StatusCode::OK, &served);
    }
    Err(ApiError::conflict(format!(
        "{} {:?} changed {MAX_RETRIES} times while it was being patched: retry",
        info.kind.kind_name(),
        display_name(ns, &name)
    )))
}

async fn delete(call: &Call) -> Result<Response, ApiError> {
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
