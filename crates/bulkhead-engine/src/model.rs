//! The cluster model: a snapshot of resources compiled for evaluation.
//!
//! [`Cluster::build`] checks references (tiers), flattens endpoint labels, compiles every
//! policy and profile, and indexes policy selectors and rule selectors by their label
//! restrictions. Two things are computed per endpoint on first use and cached: its tier
//! lists, as Felix's policy resolver does for its local endpoints, and the rule selectors
//! that match it, as Felix's IP-set memberships (so that a rule's selector is not
//! evaluated against a peer's labels on every flow). Both use the indexes, so their cost
//! follows the selectors that could match the endpoint, not every policy; both are exact
//! caches of a selector evaluation, so they change no decision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::OnceLock;

use bulkhead_api::values::{StagedAction, TierDefaultAction};
use bulkhead_api::{DEFAULT_TIER, LabelMap, Resource, parse_cidr};
use bulkhead_selector::Selector;

use crate::compile::{
    Entity, NO_SELECTOR_ID, Policy, PolicyClass, Profile, Rule, allow_all_profile, compile_profile,
};
use crate::decision::{EndpointKind, Name, PolicyRef};
use crate::endpoint::{
    DEFAULT_ALLOW_PROFILE, Endpoint, K8S_NAMESPACE_NAME_LABEL, NetworkSet,
    namespace_profile_labels, namespace_profile_name, service_account_profile_labels,
    service_account_profile_name,
};
use crate::host_defaults::{
    HostDefaults, HostDefaultsByNode, HostDefaultsLayer, HostDefaultsSources,
};
use crate::index::{FastMap, FlatLabels, SelectorIndex};
use crate::interner::LabelInterner;
use crate::net_index::NetIndex;

/// Why a set of resources does not form a usable model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A policy names a tier that does not exist.
    #[error(
        "{policy}: spec.tier: tier {tier:?} does not exist: create a Tier named {tier:?} or use an existing tier"
    )]
    MissingTier {
        /// The policy.
        policy: String,
        /// The missing tier.
        tier: String,
    },
    /// A policy or profile could not be compiled.
    #[error("{policy}: {field}: {message}")]
    Compile {
        /// The policy or profile.
        policy: String,
        /// Field path.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An endpoint address is not an IP address or CIDR.
    #[error("{endpoint}: {field}: {value:?} is not an IP address")]
    BadAddress {
        /// The endpoint.
        endpoint: String,
        /// Field path.
        field: String,
        /// The value.
        value: String,
    },
}

/// The endpoints that own an address, in order. Nearly always one, kept inline so that
/// finding it reads the hash table only.
#[derive(Debug)]
enum Owners {
    One([usize; 1]),
    Many(Vec<usize>),
}

impl Owners {
    fn as_slice(&self) -> &[usize] {
        match self {
            Owners::One(one) => one,
            Owners::Many(many) => many,
        }
    }

    fn push(&mut self, i: usize) {
        match self {
            Owners::One([first]) => *self = Owners::Many(vec![*first, i]),
            Owners::Many(many) => many.push(i),
        }
    }
}

/// A tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Name.
    pub name: Name,
    /// Order (`None` = after every ordered tier).
    pub order: Option<f64>,
    /// What happens when a selecting policy decides nothing.
    pub default_action: TierDefaultAction,
}

/// The tiers that exist without being created.
pub fn well_known_tiers() -> Vec<Tier> {
    vec![
        Tier {
            name: "kube-admin".into(),
            order: Some(1_000.0),
            default_action: TierDefaultAction::Pass,
        },
        Tier {
            name: DEFAULT_TIER.into(),
            order: Some(1_000_000.0),
            default_action: TierDefaultAction::Deny,
        },
        Tier {
            name: "kube-baseline".into(),
            order: Some(10_000_000.0),
            default_action: TierDefaultAction::Pass,
        },
    ]
}

/// Enforced policies only, or staged policies evaluated as if enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What the dataplane enforces.
    Enforced,
    /// With every staged policy applied (Set adds or replaces, Delete removes).
    Pending,
}

/// The policies of one tier that apply to an endpoint, in order.
#[derive(Debug, Clone)]
pub struct TierSlice {
    /// Index into [`Cluster::tiers`].
    pub tier: usize,
    /// Indexes into the cluster's policies, in evaluation order.
    pub policies: Vec<usize>,
}

/// Per endpoint: tier lists for every (mode, class, direction).
#[derive(Debug, Default)]
pub(crate) struct EndpointPolicies {
    lists: [Vec<TierSlice>; 16],
    /// No staged policy exists: the pending lists are the enforced ones (not stored twice).
    pending_is_enforced: bool,
}

impl EndpointPolicies {
    fn slot(mode: Mode, class: PolicyClass, ingress: bool) -> usize {
        let m = match mode {
            Mode::Enforced => 0,
            Mode::Pending => 1,
        };
        let c = match class {
            PolicyClass::Untracked => 0,
            PolicyClass::PreDnat => 1,
            PolicyClass::Normal => 2,
            PolicyClass::Forward => 3,
        };
        (m * 4 + c) * 2 + usize::from(ingress)
    }

    pub(crate) fn get(&self, mode: Mode, class: PolicyClass, ingress: bool) -> &[TierSlice] {
        let mode = if self.pending_is_enforced {
            Mode::Enforced
        } else {
            mode
        };
        &self.lists[Self::slot(mode, class, ingress)]
    }
}

/// A compiled snapshot of a cluster's resources, ready to evaluate flows.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) tiers: Vec<Tier>,
    pub(crate) policies: Vec<Policy>,
    /// Position of each policy in the global evaluation order.
    rank: Vec<usize>,
    /// Index into `tiers` of each policy's tier.
    policy_tier: Vec<usize>,
    active: [Vec<bool>; 2],
    pub(crate) endpoints: Vec<Endpoint>,
    /// `endpoints[i].labels`, laid out for evaluation.
    pub(crate) endpoint_labels: Vec<FlatLabels>,
    pub(crate) network_sets: Vec<NetworkSet>,
    /// `network_sets[i].labels`, laid out for evaluation.
    pub(crate) set_labels: Vec<FlatLabels>,
    /// The network sets' CIDRs, indexed by address.
    pub(crate) net_index: NetIndex,
    pub(crate) profiles: HashMap<String, Profile>,
    by_ip: FastMap<IpAddr, Owners>,
    index: SelectorIndex,
    endpoint_policies: Vec<OnceLock<EndpointPolicies>>,
    /// Every distinct selector of a rule (`Entity::selector_ids` index it).
    rule_selectors: Vec<Selector>,
    /// `rule_selectors` indexed by label restrictions.
    rule_index: SelectorIndex,
    /// Per endpoint, computed on first use: the ids of the rule selectors that match it,
    /// sorted. What Felix knows as the endpoint's IP-set memberships; it spares evaluating
    /// a rule's selector against a peer's labels for every flow.
    endpoint_rule_matches: Vec<OnceLock<Box<[u32]>>>,
    /// The same for each network set.
    set_rule_matches: Vec<OnceLock<Box<[u32]>>>,
    pub(crate) has_staged: bool,
    /// Each node's settings around the policies (Felix's defaults unless set).
    pub(crate) host_defaults: HostDefaultsByNode,
    /// The addresses that `Node` resources list, each with its node (the first node by
    /// name when two list one address).
    node_addresses: HashMap<IpAddr, Name>,
}

impl Cluster {
    /// Sets the settings that win over every node's FelixConfiguration (an agent's
    /// flags; a full [`HostDefaults`] sets them all).
    pub fn override_host_defaults(&mut self, overrides: impl Into<HostDefaultsLayer>) {
        self.host_defaults.set_overrides(overrides.into());
    }

    /// The settings of `node` around the policies: failsafe ports and
    /// `DefaultEndpointToHostAction` (those of FelixConfiguration `default` for `None`).
    pub fn host_defaults(&self, node: Option<&str>) -> &HostDefaults {
        self.host_defaults.of(node)
    }

    /// Where each of [`Cluster::host_defaults`]'s settings of `node` comes from.
    pub fn host_defaults_sources(&self, node: Option<&str>) -> HostDefaultsSources {
        self.host_defaults.sources(node)
    }

    /// Builds the model. Resources may come in any order; the result does not depend on it.
    pub fn build<'a>(
        resources: impl IntoIterator<Item = &'a Resource>,
    ) -> Result<Cluster, ModelError> {
        Builder::default().build(resources)
    }

    /// Builds the model without the selector index: every policy's selector is evaluated
    /// against every endpoint whose tier lists are computed. Decisions are identical to
    /// [`Cluster::build`]'s; this exists only as the same-run baseline of the `evaluate`
    /// benchmark (`docs/perf.md`), to show what the index saves.
    #[doc(hidden)]
    pub fn build_unindexed<'a>(
        resources: impl IntoIterator<Item = &'a Resource>,
    ) -> Result<Cluster, ModelError> {
        Builder {
            scan_all_selectors: true,
            ..Builder::default()
        }
        .build(resources)
    }

    /// Forgets every cached per-endpoint tier list, so that the next evaluation of each
    /// endpoint computes it again. Changes no decision; exists only so that benchmarks can
    /// measure cold evaluations repeatedly (`docs/perf.md`).
    #[doc(hidden)]
    pub fn clear_cache(&mut self) {
        for cell in &mut self.endpoint_policies {
            cell.take();
        }
        for cell in self
            .endpoint_rule_matches
            .iter_mut()
            .chain(&mut self.set_rule_matches)
        {
            cell.take();
        }
    }

    /// Tiers in evaluation order.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// Every endpoint (workloads and hosts).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Every network set.
    pub fn network_sets(&self) -> &[NetworkSet] {
        &self.network_sets
    }

    /// Every compiled policy (enforced and staged).
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Every profile, in no particular order.
    pub fn all_profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    /// The workload endpoint `namespace/name`.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| {
            e.kind == EndpointKind::Workload
                && e.namespace.as_deref() == Some(namespace)
                && &*e.name == name
        })
    }

    /// The host endpoint `name`.
    pub fn host(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.kind == EndpointKind::Host && &*e.name == name)
    }

    /// The node whose own address `ip` is: the node of the host endpoint there, else the
    /// `Node` resource that lists it; `None` for a workload's address and for addresses
    /// no node claims.
    pub fn node_at(&self, ip: IpAddr) -> Option<&str> {
        self.node_owning(self.endpoints_at(ip), ip).map(|n| &**n)
    }

    /// [`Cluster::node_at`] with the endpoints at `ip` already looked up.
    pub(crate) fn node_owning(&self, endpoints: &[usize], ip: IpAddr) -> Option<&Name> {
        match endpoints.first() {
            Some(&e) if self.endpoints[e].kind == EndpointKind::Host => {
                self.endpoints[e].node.as_ref()
            }
            Some(_) => None,
            None => self.node_addresses.get(&ip),
        }
    }

    /// Index of the endpoint that owns `ip` (workloads before hosts).
    pub(crate) fn endpoint_at(&self, ip: IpAddr) -> Option<usize> {
        self.endpoints_at(ip).first().copied()
    }

    /// The endpoint whose policy applies at `ip`, if any (workloads before hosts).
    pub fn endpoint_owning(&self, ip: IpAddr) -> Option<&Endpoint> {
        self.endpoint_at(ip).map(|i| &self.endpoints[i])
    }

    /// The host endpoints on `node` that police traffic their host forwards in
    /// `direction` (`ingress`: coming in, by pre-DNAT or `applyOnForward` policies; else
    /// going out, by `applyOnForward` policies), in model order.
    pub fn forwarding_host_endpoints(&self, node: &str, ingress: bool) -> Vec<&Endpoint> {
        let classes: &[PolicyClass] = if ingress {
            &[PolicyClass::PreDnat, PolicyClass::Forward]
        } else {
            &[PolicyClass::Forward]
        };
        (0..self.endpoints.len())
            .filter(|&i| {
                let e = &self.endpoints[i];
                e.kind == EndpointKind::Host
                    && e.node.as_deref() == Some(node)
                    && classes.iter().any(|&class| {
                        [Mode::Enforced, Mode::Pending].iter().any(|&mode| {
                            !self
                                .endpoint_policies(i)
                                .get(mode, class, ingress)
                                .is_empty()
                        })
                    })
            })
            .map(|i| &self.endpoints[i])
            .collect()
    }

    /// Indexes of every endpoint that owns `ip`.
    pub(crate) fn endpoints_at(&self, ip: IpAddr) -> &[usize] {
        self.by_ip
            .get(&ip)
            .map(Owners::as_slice)
            .unwrap_or_default()
    }

    /// The policies (enforced or staged) whose selector matches endpoint `ep`.
    pub fn policies_selecting(&self, ep: &Endpoint) -> Vec<&Policy> {
        let mut ids = self.matching_policies(&ep.labels);
        ids.sort_by_key(|&i| self.rank[i]);
        ids.into_iter().map(|i| &self.policies[i]).collect()
    }

    /// How many endpoints a policy's selector matches.
    pub fn count_selected(&self, policy: &Policy) -> usize {
        self.endpoints
            .iter()
            .filter(|e| policy.selector.matches(&e.labels))
            .count()
    }

    fn matching_policies(&self, labels: &LabelMap) -> Vec<usize> {
        let mut ids = Vec::new();
        self.index.for_each_candidate(labels, |i| {
            if self.policies[i].selector.matches(labels) {
                ids.push(i);
            }
        });
        ids
    }

    /// True if rule selector `sel`, whose id is `id`, matches endpoint `ep`.
    pub(crate) fn endpoint_matches(&self, ep: usize, sel: &Selector, id: u32) -> bool {
        if id == NO_SELECTOR_ID {
            return sel.matches(&self.endpoint_labels[ep]);
        }
        self.endpoint_rule_matches[ep]
            .get_or_init(|| self.matching_rule_selectors(&self.endpoint_labels[ep]))
            .binary_search(&id)
            .is_ok()
    }

    /// True if rule selector `sel`, whose id is `id`, matches network set `set`.
    pub(crate) fn network_set_matches(&self, set: usize, sel: &Selector, id: u32) -> bool {
        if id == NO_SELECTOR_ID {
            return sel.matches(&self.set_labels[set]);
        }
        self.set_rule_matches[set]
            .get_or_init(|| self.matching_rule_selectors(&self.set_labels[set]))
            .binary_search(&id)
            .is_ok()
    }

    fn matching_rule_selectors(&self, labels: &FlatLabels) -> Box<[u32]> {
        let mut ids = Vec::new();
        self.rule_index.candidates(labels.iter(), |i| {
            if self.rule_selectors[i].matches(labels) {
                ids.push(i as u32);
            }
        });
        ids.sort_unstable();
        ids.dedup();
        ids.into_boxed_slice()
    }

    pub(crate) fn endpoint_policies(&self, ep: usize) -> &EndpointPolicies {
        self.endpoint_policies[ep].get_or_init(|| self.compute_endpoint_policies(ep))
    }

    fn compute_endpoint_policies(&self, ep: usize) -> EndpointPolicies {
        let endpoint = &self.endpoints[ep];
        let labels = &self.endpoint_labels[ep];
        let mut ids = Vec::new();
        self.index.candidates(labels.iter(), |i| {
            if self.policies[i].selector.matches(labels) {
                ids.push(i);
            }
        });
        ids.sort_unstable_by_key(|&i| self.rank[i]);
        let mut out = EndpointPolicies {
            pending_is_enforced: !self.has_staged,
            ..EndpointPolicies::default()
        };
        let modes: &[Mode] = if self.has_staged {
            &[Mode::Enforced, Mode::Pending]
        } else {
            &[Mode::Enforced]
        };
        let classes: &[PolicyClass] = match endpoint.kind {
            EndpointKind::Host => &[
                PolicyClass::Untracked,
                PolicyClass::PreDnat,
                PolicyClass::Normal,
                PolicyClass::Forward,
            ],
            EndpointKind::Workload => &[PolicyClass::Normal],
        };
        for &mode in modes {
            let active = &self.active[mode as usize];
            for &class in classes {
                for ingress in [true, false] {
                    let list = &mut out.lists[EndpointPolicies::slot(mode, class, ingress)];
                    for &i in &ids {
                        let p = &self.policies[i];
                        let governs = if ingress {
                            p.ingress_type
                        } else {
                            p.egress_type
                        };
                        if !active[i]
                            || !p.applies_in(class)
                            || !governs
                            || !endpoint.governed_by(class)
                        {
                            continue;
                        }
                        let tier = self.policy_tier[i];
                        match list.last_mut() {
                            Some(slice) if slice.tier == tier => slice.policies.push(i),
                            _ => list.push(TierSlice {
                                tier,
                                policies: vec![i],
                            }),
                        }
                    }
                }
            }
        }
        out
    }

    /// The tiers and policies of one class that apply to the endpoint owning `ip` in one
    /// direction and mode, in evaluation order (what explain shows).
    pub fn applicable(
        &self,
        ip: IpAddr,
        class: PolicyClass,
        ingress: bool,
        mode: Mode,
    ) -> Vec<(&Tier, Vec<&Policy>)> {
        let Some(ep) = self.endpoint_at(ip) else {
            return Vec::new();
        };
        self.endpoint_policies(ep)
            .get(mode, class, ingress)
            .iter()
            .map(|s| {
                (
                    &self.tiers[s.tier],
                    s.policies.iter().map(|&i| &self.policies[i]).collect(),
                )
            })
            .collect()
    }
}

#[derive(Default)]
struct Builder {
    /// Baseline only ([`Cluster::build_unindexed`]): file every selector as unindexed.
    scan_all_selectors: bool,
    namespaces: BTreeMap<String, LabelMap>,
    service_accounts: BTreeMap<(String, String), LabelMap>,
    profile_labels: HashMap<String, LabelMap>,
    profiles: HashMap<String, Profile>,
}

impl Builder {
    fn build<'a>(
        mut self,
        resources: impl IntoIterator<Item = &'a Resource>,
    ) -> Result<Cluster, ModelError> {
        let mut resources: Vec<&Resource> = resources.into_iter().collect();
        // Evaluation must not depend on load order: sort by identity first.
        resources.sort_by_cached_key(|r| r.key());

        let mut tiers = well_known_tiers();
        let mut host_defaults = HostDefaultsByNode::default();
        let mut node_addresses: HashMap<IpAddr, Name> = HashMap::new();
        for r in &resources {
            match r {
                Resource::Node(n) => {
                    let name: Name = n.metadata.name.as_str().into();
                    for (_, address) in n.spec.addresses() {
                        if let Some(net) = parse_cidr(address) {
                            node_addresses.entry(net.addr()).or_insert(name.clone());
                        }
                    }
                }
                Resource::FelixConfiguration(f) => {
                    let layer = HostDefaultsLayer::from_spec(&f.spec);
                    host_defaults.set_configuration(&f.metadata.name, Some(layer));
                }
                Resource::Namespace(m) => {
                    let mut labels = m.labels.clone();
                    labels.insert(K8S_NAMESPACE_NAME_LABEL.into(), m.name.clone());
                    self.namespaces.insert(m.name.clone(), labels);
                }
                Resource::ServiceAccount(m) => {
                    let ns = m.namespace.clone().unwrap_or_default();
                    self.service_accounts
                        .insert((ns, m.name.clone()), m.labels.clone());
                }
                Resource::Tier(t) => {
                    let tier = Tier {
                        name: t.metadata.name.as_str().into(),
                        order: t.spec.order,
                        default_action: t.spec.default_action.unwrap_or_default(),
                    };
                    match tiers.iter_mut().find(|x| x.name == tier.name) {
                        Some(existing) => *existing = tier,
                        None => tiers.push(tier),
                    }
                }
                Resource::Profile(p) => {
                    let name = &p.metadata.name;
                    self.profiles.insert(
                        name.clone(),
                        compile_profile(name, &p.spec.ingress, &p.spec.egress)?,
                    );
                    self.profile_labels
                        .insert(name.clone(), p.spec.labels_to_apply.clone());
                }
                _ => {}
            }
        }
        tiers.sort_by(|a, b| {
            let key = |t: &Tier| t.order.unwrap_or(f64::INFINITY);
            key(a).total_cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
        });

        // Namespaces and service accounts that endpoints refer to exist implicitly.
        for r in &resources {
            let (ns, sa) = match r {
                Resource::Pod(p) => (
                    p.metadata.namespace.clone(),
                    Some(
                        p.spec
                            .service_account_name
                            .clone()
                            .unwrap_or_else(|| "default".into()),
                    ),
                ),
                Resource::WorkloadEndpoint(w) => (
                    w.metadata.namespace.clone(),
                    (!w.spec.service_account_name.is_empty())
                        .then(|| w.spec.service_account_name.clone()),
                ),
                Resource::NetworkSet(s) => (s.metadata.namespace.clone(), None),
                _ => continue,
            };
            let ns = ns.unwrap_or_else(|| "default".into());
            self.namespaces.entry(ns.clone()).or_insert_with(|| {
                LabelMap::from([(K8S_NAMESPACE_NAME_LABEL.to_string(), ns.clone())])
            });
            if let Some(sa) = sa {
                self.service_accounts.entry((ns, sa)).or_default();
            }
        }
        for (ns, labels) in &self.namespaces {
            let name = namespace_profile_name(ns);
            self.profiles
                .entry(name.clone())
                .or_insert_with(|| allow_all_profile(&name));
            self.profile_labels
                .entry(name)
                .or_insert_with(|| namespace_profile_labels(ns, labels));
        }
        for ((ns, sa), labels) in &self.service_accounts {
            let name = service_account_profile_name(ns, sa);
            self.profiles
                .entry(name.clone())
                .or_insert_with(|| Profile {
                    name: name.clone(),
                    ingress: Vec::new(),
                    egress: Vec::new(),
                });
            self.profile_labels
                .entry(name)
                .or_insert_with(|| service_account_profile_labels(sa, labels));
        }
        self.profiles
            .entry(DEFAULT_ALLOW_PROFILE.into())
            .or_insert_with(|| allow_all_profile(DEFAULT_ALLOW_PROFILE));

        let mut endpoints = Vec::new();
        let mut network_sets = Vec::new();
        // The same conversions the calc graph uses, one resource at a time.
        // Label maps shared between the endpoints that carry the same ones.
        let labels_of = |profile: &str| self.profile_labels.get(profile);
        let mut interner = LabelInterner::default();
        for r in &resources {
            if let Some(e) = crate::incremental::endpoint(r, labels_of)? {
                endpoints.push(interner.endpoint(e));
            } else if let Some(n) = crate::incremental::network_set(r, labels_of)? {
                network_sets.push(interner.network_set(n));
            }
        }
        // Workloads own an address before hosts do.
        endpoints.sort_by_key(|e: &Endpoint| e.kind == EndpointKind::Host);
        let mut by_ip: FastMap<IpAddr, Owners> = FastMap::default();
        for (i, e) in endpoints.iter().enumerate() {
            for ip in &e.ips {
                by_ip
                    .entry(*ip)
                    .and_modify(|o| o.push(i))
                    .or_insert(Owners::One([i]));
            }
        }

        let tier_names: HashSet<&str> = tiers.iter().map(|t| &*t.name).collect();
        let (mut policies, deletions) = compile_policies(&resources, &tier_names)?;
        let rule_selectors = number_rule_selectors(
            policies
                .iter_mut()
                .flat_map(|p| p.ingress.iter_mut().chain(&mut p.egress))
                .chain(
                    self.profiles
                        .values_mut()
                        .flat_map(|p| p.ingress.iter_mut().chain(&mut p.egress)),
                ),
        );
        let mut rule_index = SelectorIndex::default();
        for (i, s) in rule_selectors.iter().enumerate() {
            if self.scan_all_selectors {
                rule_index.insert_unindexed(i);
            } else {
                rule_index.insert(i, s);
            }
        }
        // Position of each policy's tier (usize::MAX: unknown, sorts last).
        let tier_pos: Vec<usize> = policies
            .iter()
            .map(|p| {
                tiers
                    .iter()
                    .position(|t| *t.name == *p.tier)
                    .unwrap_or(usize::MAX)
            })
            .collect();
        let mut rank_order: Vec<usize> = (0..policies.len()).collect();
        rank_order.sort_by(|&a, &b| {
            let (pa, pb) = (&policies[a], &policies[b]);
            let order = |p: &Policy| p.order.unwrap_or(f64::INFINITY);
            tier_pos[a]
                .cmp(&tier_pos[b])
                .then_with(|| order(pa).total_cmp(&order(pb)))
                .then_with(|| pa.id.name.cmp(&pb.id.name))
                .then_with(|| pa.id.namespace.cmp(&pb.id.namespace))
                .then_with(|| pa.id.kind.cmp(&pb.id.kind))
        });
        let mut rank = vec![0; policies.len()];
        for (pos, &i) in rank_order.iter().enumerate() {
            rank[i] = pos;
        }

        let replaced: HashSet<PolicyRef> = policies
            .iter()
            .filter(|p| p.staged == Some(StagedAction::Set))
            .map(|p| enforced_ref(&p.id))
            .chain(deletions)
            .collect();
        let enforced: Vec<bool> = policies.iter().map(|p| p.staged.is_none()).collect();
        let pending: Vec<bool> = policies
            .iter()
            .map(|p| match p.staged {
                None => !replaced.contains(&p.id),
                Some(action) => action == StagedAction::Set,
            })
            .collect();
        let mut index = SelectorIndex::default();
        for (i, p) in policies.iter().enumerate() {
            if !(enforced[i] || pending[i]) {
                continue;
            }
            if self.scan_all_selectors {
                index.insert_unindexed(i);
            } else {
                index.insert(i, &p.selector);
            }
        }
        // For tier lists, an unknown tier counts as the last one.
        let policy_tier = tier_pos
            .iter()
            .map(|&t| t.min(tiers.len().saturating_sub(1)))
            .collect();
        let has_staged = policies.iter().any(|p| p.staged.is_some()) || !replaced.is_empty();
        Ok(Cluster {
            endpoint_policies: (0..endpoints.len()).map(|_| OnceLock::new()).collect(),
            endpoint_rule_matches: (0..endpoints.len()).map(|_| OnceLock::new()).collect(),
            set_rule_matches: (0..network_sets.len()).map(|_| OnceLock::new()).collect(),
            rule_selectors,
            rule_index,
            endpoint_labels: endpoints
                .iter()
                .map(|e| FlatLabels::new(&e.labels))
                .collect(),
            set_labels: network_sets
                .iter()
                .map(|s| FlatLabels::new(&s.labels))
                .collect(),
            net_index: NetIndex::new(&network_sets),
            tiers,
            policies,
            rank,
            policy_tier,
            active: [enforced, pending],
            endpoints,
            network_sets,
            profiles: self.profiles,
            by_ip,
            index,
            has_staged,
            host_defaults,
            node_addresses,
        })
    }
}

/// Gives every distinct selector of `rules` an id (`Entity::selector_ids`); returns the
/// selectors by id.
fn number_rule_selectors<'a>(rules: impl Iterator<Item = &'a mut Rule>) -> Vec<Selector> {
    let mut ids: HashMap<Selector, u32> = HashMap::new();
    let mut selectors = Vec::new();
    for rule in rules {
        for entity in [&mut rule.src, &mut rule.dst] {
            let Entity {
                selector,
                not_selector,
                selector_ids,
                ..
            } = entity;
            for (slot, sel) in [selector.as_ref(), not_selector.as_ref()]
                .into_iter()
                .enumerate()
            {
                if let Some(sel) = sel {
                    selector_ids[slot] = *ids.entry(sel.clone()).or_insert_with(|| {
                        selectors.push(sel.clone());
                        (selectors.len() - 1) as u32
                    });
                }
            }
        }
    }
    selectors
}

fn enforced_ref(id: &PolicyRef) -> PolicyRef {
    PolicyRef {
        kind: id.kind.enforced(),
        ..id.clone()
    }
}

/// Compiles every policy resource; returns the policies and the enforced policies that
/// staged `Delete` policies would remove. Each policy is compiled as the incremental
/// model compiles it ([`crate::incremental::policy`]); this adds the check that its tier exists.
fn compile_policies(
    resources: &[&Resource],
    tiers: &HashSet<&str>,
) -> Result<(Vec<Policy>, Vec<PolicyRef>), ModelError> {
    let mut policies = Vec::new();
    let mut deletions = Vec::new();
    for r in resources {
        let kind = r.kind();
        if !kind.is_policy() {
            continue;
        }
        let meta = r.meta();
        let id = PolicyRef {
            kind,
            namespace: meta
                .namespace
                .as_deref()
                .filter(|_| kind.is_namespaced())
                .map(Name::from),
            name: meta.name.as_str().into(),
        };
        if crate::incremental::is_staged_delete(r) {
            deletions.push(enforced_ref(&id));
            continue;
        }
        if let Some(tier) = crate::incremental::required_tier(r)
            && !tiers.contains(tier)
        {
            return Err(ModelError::MissingTier {
                policy: format!("{} {}", kind.kind_name(), id_path(&id)),
                tier: tier.to_string(),
            });
        }
        policies.extend(crate::incremental::policy(r)?);
    }
    Ok((policies, deletions))
}

fn id_path(id: &PolicyRef) -> String {
    match &id.namespace {
        Some(ns) => format!("{ns}/{}", id.name),
        None => id.name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_api::load_str;

    use super::*;

    /// Rule selectors of every shape the index files differently (by value, by presence,
    /// unindexed), against endpoints and a network set.
    const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {env: prod}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: all()
  ingress:
    - {action: Allow, source: {selector: "app == 'web'"}}
    - {action: Allow, source: {selector: "has(app) && !has(tier)"}}
    - {action: Allow, source: {notSelector: "app in {'web', 'db'}"}}
    - {action: Allow, source: {selector: "!has(app)"}}
    - {action: Allow, source: {namespaceSelector: "env == 'prod'"}}
    - {action: Allow, source: {namespaceSelector: global()}}
    - {action: Allow, source: {selector: "role starts with 'fr'"}}
    - {action: Allow, source: {selector: "all()"}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: n, namespace: a}
spec:
  selector: all()
  egress:
    - {action: Allow, destination: {selector: "tier == 'db' || role == 'front'"}}
    - {action: Allow, destination: {serviceAccounts: {names: [web]}}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: s, labels: {role: front}}
spec: {nets: [10.9.0.0/16]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {serviceAccountName: web}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db, tier: db}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: b}
status: {podIP: 10.0.0.3}
"#;

    #[test]
    fn cached_rule_selector_matches_are_exact() {
        let loaded = load_str("model.yaml", CLUSTER).expect("valid resources");
        for build in [Cluster::build, Cluster::build_unindexed] {
            let cluster = build(loaded.iter().map(|l| &l.resource)).expect("valid model");
            assert!(cluster.rule_selectors.len() >= 10);
            for (id, sel) in cluster.rule_selectors.iter().enumerate() {
                for (ep, e) in cluster.endpoints.iter().enumerate() {
                    let cached = cluster.endpoint_matches(ep, sel, id as u32);
                    assert_eq!(cached, sel.matches(&e.labels), "{sel} on {}", e.name);
                }
                for (i, s) in cluster.network_sets.iter().enumerate() {
                    let cached = cluster.network_set_matches(i, sel, id as u32);
                    assert_eq!(cached, sel.matches(&s.labels), "{sel} on {}", s.name);
                }
            }
            // Every rule's selectors were numbered.
            for rule in cluster
                .policies
                .iter()
                .flat_map(|p| p.ingress.iter().chain(&p.egress))
            {
                for e in [&rule.src, &rule.dst] {
                    let [s, n] = e.selector_ids;
                    assert_eq!(e.selector.is_some(), s != NO_SELECTOR_ID);
                    assert_eq!(e.not_selector.is_some(), n != NO_SELECTOR_ID);
                }
            }
        }
    }
}
