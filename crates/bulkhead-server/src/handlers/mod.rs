//! The resource endpoints: get, list, create, replace, patch and delete for every kind, each
//! going authenticate (middleware) → authorize → validate → store → audit.
//!
//! Writes are compare-and-swap on the key's `mod_revision`: a replace whose body names a
//! `resourceVersion` must match it (else 409 Conflict); one that does not is retried on a
//! concurrent change, so the last writer wins without ever losing the uid or creation time.

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_TYPE, WARNING};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bulkhead_api::Kind;
use bulkhead_selector::Selector;
use futures_util::StreamExt;
use serde_json::Value;

use crate::audit::AuditEntry;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::kinds::Target;
use crate::metrics::VerbLabel;
use crate::objects::{self, Format, tier_of_doc};
use crate::rbac::{self, Verb, rule_kind_name};
use crate::server::{AppState, RequestId};

mod read;
mod write;

pub use read::Filter;
use read::{get, list};
use write::{create, delete, patch, replace};

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
            name: self.target.name.as_deref(),
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
            name: Some(name),
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

/// The query's parameters in order; one with an empty value counts as absent (as in
/// Kubernetes: `?timeoutSeconds=` is no timeout, not a malformed number).
pub(crate) fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
    Ok(query.0.into_iter().filter(|(_, v)| !v.is_empty()).collect())
}

impl Params {
    fn parse(uri: &Uri) -> Result<Params, ApiError> {
        let mut p = Params::default();
        // The booleans Kubernetes accepts (Go's strconv.ParseBool); anything else is 400.
        let flag = |k: &str, v: &str| match v {
            "1" | "t" | "T" | "true" | "True" | "TRUE" => Ok(true),
            "0" | "f" | "F" | "false" | "False" | "FALSE" => Ok(false),
            _ => Err(ApiError::bad_request(format!(
                "{k} {v:?} is not a boolean: expected true or false"
            ))),
        };
        for (k, v) in query_pairs(uri)? {
            match k.as_str() {
                "watch" => p.watch = flag(&k, &v)?,
                "resourceVersion" => p.resource_version = Some(v),
                "labelSelector" => p.label_selector = Some(v),
                "allowWatchBookmarks" => p.bookmarks = flag(&k, &v)?,
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
    let info = call.target.info;
    let across_namespaces = info.kind.is_namespaced() && call.target.namespace.is_none();
    // What the path supports, for the `Allow` of a 405.
    let allow = match (is_object, across_namespaces) {
        (true, _) => "GET, PUT, PATCH, DELETE",
        (false, true) => "GET",
        (false, false) => "GET, POST",
    };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let limit = call.state.config.body_limit;
    match (method.as_str(), is_object) {
        ("GET", false) if params.watch => ("watch", crate::watch::watch(call, &params).await),
        ("GET", false) => ("list", list(call, &params).await),
        ("GET", true) => ("get", get(call).await),
        // Across namespaces there is only the list (before the body is read).
        ("POST", false) if across_namespaces => (
            "create",
            Err(ApiError::method_not_allowed(
                format!(
                    "create {} in a namespace: POST to {}",
                    info.kind.kind_name(),
                    info.collection_path(Some("<namespace>"))
                ),
                allow,
            )),
        ),
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
            Err(ApiError::method_not_allowed(
                format!("{m} is not supported on {}", uri.path()),
                allow,
            )),
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

/// A write's answer: the stored object, with a `Warning: 299 - "<advisory>"` header for
/// each thing `resource` asks for that is not enforced ([`bulkhead_api::advisories`]), as
/// Kubernetes warns of deprecated fields.
fn written(
    code: StatusCode,
    served: &Value,
    resource: &bulkhead_api::Resource,
) -> Result<Response, ApiError> {
    let mut response = value_response(code, served)?;
    for advisory in bulkhead_api::advisories(resource) {
        let value = HeaderValue::from_str(&format!("299 - \"{advisory}\""))
            .map_err(|e| ApiError::internal(format!("warning header: {e}")))?;
        response.headers_mut().append(WARNING, value);
    }
    Ok(response)
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
