//! Reads: get one object, list a kind (with label and field selectors).

use axum::http::StatusCode;
use axum::response::Response;
use bulkhead_api::Kind;
use bulkhead_selector::Selector;
use bulkhead_store::Store;

use super::{Call, Params, display_name, json_response};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::kinds::KindInfo;
use crate::objects::{Summary, served_bytes};
use crate::rbac::{self, Verb, rule_kind_name};

pub(super) async fn get(call: &Call) -> Result<Response, ApiError> {
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

pub(super) fn not_found(info: KindInfo, ns: Option<&str>, name: &str) -> ApiError {
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
            name: None,
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
                name: Some(&summary.metadata.name),
            }))
    }
}

pub(super) async fn list(call: &Call, params: &Params) -> Result<Response, ApiError> {
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
