//! What `evaluate` returns: the verdict, each side's verdict, and the trace that explains it.

use std::fmt;
use std::sync::Arc;

use bulkhead_api::Kind;
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

/// A name in a report, shared with the model it came from: a decision copies none of the
/// model's names, it only counts references to them.
pub type Name = Arc<str>;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The connection gets through.
    Allow,
    /// The connection is dropped.
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}

/// Which way traffic crosses an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the endpoint (the destination's side).
    Ingress,
    /// Out of the endpoint (the source's side).
    Egress,
}

/// The kind of endpoint a side belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// A workload (pod, VM, container).
    Workload,
    /// A host interface protected by a HostEndpoint.
    Host,
}

/// A reference to an endpoint, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EndpointRef {
    /// Workload or host.
    pub kind: EndpointKind,
    /// Namespace (workloads only).
    pub namespace: Option<Name>,
    /// Name (pod or HostEndpoint name).
    pub name: Name,
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.namespace) {
            (EndpointKind::Workload, Some(ns)) => write!(f, "{ns}/{}", self.name),
            (EndpointKind::Workload, None) => f.write_str(&self.name),
            (EndpointKind::Host, _) => write!(f, "host/{}", self.name),
        }
    }
}

/// What a hit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HitAction {
    /// Accepted.
    Allow,
    /// Dropped.
    Deny,
    /// Passed to the next tier.
    Pass,
    /// Logged and continued.
    Log,
}

impl fmt::Display for HitAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HitAction::Allow => "allow",
            HitAction::Deny => "deny",
            HitAction::Pass => "pass",
            HitAction::Log => "log",
        })
    }
}

/// Which part of a policy or profile produced a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleRef {
    /// Rule at this 0-based index.
    Index(usize),
    /// No rule in the tier decided; the tier's default action applied.
    EndOfTier,
    /// No profile (or no profile rule) matched.
    NoProfile,
    /// A failsafe port of a host endpoint (evaluated before any policy).
    Failsafe,
    /// The reply of the connection does not get through the host endpoint: no untracked
    /// policy allows it while the request was untracked, or one denies it.
    UntrackedReply,
    /// A workload's traffic to its own host, which the node's `DefaultEndpointToHostAction`
    /// drops after the workload's egress allowed it.
    EndpointToHost,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Index(i) => write!(f, "{i}"),
            RuleRef::EndOfTier => f.write_str("end-of-tier"),
            RuleRef::NoProfile => f.write_str("no-profile"),
            RuleRef::Failsafe => f.write_str("failsafe"),
            RuleRef::UntrackedReply => f.write_str("untracked-reply"),
            RuleRef::EndpointToHost => f.write_str("endpoint-to-host"),
        }
    }
}

/// A reference to a policy or profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PolicyRef {
    /// Policy kind, or `Profile`.
    pub kind: Kind,
    /// Namespace (namespaced kinds).
    pub namespace: Option<Name>,
    /// Name (empty for a no-profile or failsafe hit).
    pub name: Name,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind.short_name())?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.name)
    }
}

/// One step of the evaluation that did something: a rule that matched, an end of tier, a
/// profile decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Hit {
    /// The tier (`None` for profiles and failsafes).
    pub tier: Option<Name>,
    /// The policy or profile; for an end-of-tier hit, the first policy of the tier that
    /// applies to the endpoint (the "trigger").
    pub policy: PolicyRef,
    /// What happened.
    pub action: HitAction,
    /// Which rule.
    pub rule: RuleRef,
}

impl Hit {
    /// Calico's flow-log form: `index|tier|kind:ns/name|action|rule`, with rule `-1` for a
    /// tier's or profile's default and `__PROFILE__` as the tier of profiles.
    pub fn trace_string(&self, index: usize) -> String {
        let tier = self.tier.as_deref().unwrap_or("__PROFILE__");
        let rule = match self.rule {
            RuleRef::Index(i) => i.to_string(),
            RuleRef::EndOfTier | RuleRef::NoProfile => "-1".into(),
            RuleRef::Failsafe => "failsafe".into(),
            RuleRef::UntrackedReply => "untracked-reply".into(),
            RuleRef::EndpointToHost => "endpoint-to-host".into(),
        };
        format!("{index}|{tier}|{}|{}|{rule}", self.policy, self.action)
    }
}

/// The outcome on one side (one endpoint, one direction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideOutcome {
    /// The endpoint whose policy was evaluated.
    pub endpoint: EndpointRef,
    /// Ingress (destination side) or egress (source side).
    pub direction: Direction,
    /// This side's verdict.
    pub verdict: Verdict,
    /// Tiers that applied to the endpoint in this direction, in evaluation order.
    pub tiers: Vec<Name>,
    /// Every hit, in order; the last one decided.
    pub trace: Vec<Hit>,
}

impl SideOutcome {
    /// The hit that settled this side.
    pub fn decided_by(&self) -> Option<&Hit> {
        self.trace.last()
    }
}

/// The result of one evaluation mode (enforced, or with staged policies as if enforced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Allowed only if every side present allows.
    pub verdict: Verdict,
    /// For a forwarded flow, the host endpoint it came in through (its pre-DNAT and
    /// `applyOnForward` policies, ingress); `None` unless evaluated with a `Via`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_in: Option<SideOutcome>,
    /// The source endpoint's egress evaluation (`None`: the source is external, or a host
    /// sending to one of its own workloads, which is not policed).
    pub egress: Option<SideOutcome>,
    /// The destination endpoint's ingress evaluation (`None`: the destination is external,
    /// or a host that one of its own workloads sends to, whose policy does not apply).
    pub ingress: Option<SideOutcome>,
    /// For a forwarded flow, the host endpoint it leaves through (its `applyOnForward`
    /// policies, egress); `None` unless evaluated with a `Via`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_out: Option<SideOutcome>,
}

impl Outcome {
    /// The sides present, in the order a packet meets them.
    pub fn sides(&self) -> impl Iterator<Item = &SideOutcome> {
        [
            self.forwarded_in.as_ref(),
            self.egress.as_ref(),
            self.ingress.as_ref(),
            self.forwarded_out.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    /// The side that settled the verdict: the first side that denied (in
    /// [`Outcome::sides`] order), or, for an allowed flow, the last side that was checked.
    pub fn deciding_side(&self) -> Option<&SideOutcome> {
        match self.verdict {
            Verdict::Deny => self.sides().find(|s| s.verdict == Verdict::Deny),
            Verdict::Allow => self.sides().last(),
        }
    }

    /// The hit that settled the verdict.
    pub fn decided_by(&self) -> Option<&Hit> {
        self.deciding_side().and_then(SideOutcome::decided_by)
    }

    /// Calico-style trace strings of every side, in [`Outcome::sides`] order.
    pub fn trace_strings(&self) -> Vec<String> {
        self.sides()
            .flat_map(|s| s.trace.iter())
            .enumerate()
            .map(|(i, h)| h.trace_string(i))
            .collect()
    }
}

/// The full answer for a flow: what is enforced, and what staged policies would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The enforced outcome.
    pub enforced: Outcome,
    /// The outcome with every staged policy evaluated as if enforced; `None` when the
    /// cluster has no staged policy, so it is the enforced one (not computed or copied
    /// twice). Read it through [`Decision::pending`].
    staged: Option<Outcome>,
}

impl Decision {
    /// A decision from its enforced outcome and, when staged policies exist, the pending
    /// one.
    pub fn new(enforced: Outcome, pending: Option<Outcome>) -> Self {
        Decision {
            enforced,
            staged: pending,
        }
    }

    /// The enforced verdict.
    pub fn verdict(&self) -> Verdict {
        self.enforced.verdict
    }

    /// The outcome with every staged policy evaluated as if enforced.
    pub fn pending(&self) -> &Outcome {
        self.staged.as_ref().unwrap_or(&self.enforced)
    }

    /// The verdict if staged policies were enforced.
    pub fn pending_verdict(&self) -> Verdict {
        self.pending().verdict
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Decision", 2)?;
        s.serialize_field("enforced", &self.enforced)?;
        s.serialize_field("pending", self.pending())?;
        s.end()
    }
}
