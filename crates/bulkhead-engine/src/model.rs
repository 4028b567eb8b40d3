//! The cluster model: a snapshot of resources compiled for evaluation.
//!
//! [`Cluster::build`] checks references (tiers), flattens endpoint labels, compiles every
//! policy and profile, and indexes policy selectors. Per-endpoint tier lists are computed
//! on first use and cached, as Felix's policy resolver does for its local endpoints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::OnceLock;

use bulkhead_api::calico::EndpointPort;
use bulkhead_api::values::{Protocol, StagedAction, TierDefaultAction};
use bulkhead_api::{DEFAULT_TIER, Kind, LabelMap, NAMESPACE_LABEL, Resource, parse_cidr};

use crate::compile::{
    Policy, PolicyClass, PolicyInput, Profile, allow_all_profile, compile_policy, compile_profile,
};
use crate::decision::{EndpointKind, PolicyRef};
use crate::endpoint::{
    DEFAULT_ALLOW_PROFILE, Endpoint, K8S_NAMESPACE_NAME_LABEL, NamedPort, NetworkSet,
    flatten_labels, namespace_profile_labels, namespace_profile_name,
    service_account_profile_labels, service_account_profile_name, workload_special_labels,
};
use crate::index::SelectorIndex;
use crate::k8s_convert::{K8S_POLICY_ORDER, k8s_to_calico};

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

/// A tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Name.
    pub name: String,
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
    lists: [Vec<TierSlice>; 12],
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
        };
        (m * 3 + c) * 2 + usize::from(ingress)
    }

    pub(crate) fn get(&self, mode: Mode, class: PolicyClass, ingress: bool) -> &[TierSlice] {
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
    active: [Vec<bool>; 2],
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) network_sets: Vec<NetworkSet>,
    pub(crate) profiles: HashMap<String, Profile>,
    by_ip: HashMap<IpAddr, Vec<usize>>,
    index: SelectorIndex,
    endpoint_policies: Vec<OnceLock<EndpointPolicies>>,
    pub(crate) has_staged: bool,
}

impl Cluster {
    /// Builds the model. Resources may come in any order; the result does not depend on it.
    pub fn build<'a>(
        resources: impl IntoIterator<Item = &'a Resource>,
    ) -> Result<Cluster, ModelError> {
        Builder::default().build(resources)
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

    /// The workload endpoint `namespace/name`.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| {
            e.kind == EndpointKind::Workload
                && e.namespace.as_deref() == Some(namespace)
                && e.name == name
        })
    }

    /// The host endpoint `name`.
    pub fn host(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.kind == EndpointKind::Host && e.name == name)
    }

    /// Index of the endpoint that owns `ip` (workloads before hosts).
    pub(crate) fn endpoint_at(&self, ip: IpAddr) -> Option<usize> {
        self.by_ip.get(&ip).and_then(|v| v.first().copied())
    }

    /// Indexes of every endpoint that owns `ip`.
    pub(crate) fn endpoints_at(&self, ip: IpAddr) -> &[usize] {
        self.by_ip.get(&ip).map(Vec::as_slice).unwrap_or_default()
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

    pub(crate) fn endpoint_policies(&self, ep: usize) -> &EndpointPolicies {
        self.endpoint_policies[ep].get_or_init(|| self.compute_endpoint_policies(ep))
    }

    fn compute_endpoint_policies(&self, ep: usize) -> EndpointPolicies {
        let endpoint = &self.endpoints[ep];
        let mut ids = self.matching_policies(&endpoint.labels);
        ids.sort_by_key(|&i| self.rank[i]);
        let mut out = EndpointPolicies::default();
        let classes: &[PolicyClass] = match endpoint.kind {
            EndpointKind::Host => &[
                PolicyClass::Untracked,
                PolicyClass::PreDnat,
                PolicyClass::Normal,
            ],
            EndpointKind::Workload => &[PolicyClass::Normal],
        };
        for mode in [Mode::Enforced, Mode::Pending] {
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
                        if !active[i] || p.class != class || !governs {
                            continue;
                        }
                        let tier = self.tier_index(&p.tier);
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

    /// The tiers and policies that apply to the endpoint owning `ip` in one direction and
    /// mode, in evaluation order (normal policies; what explain shows).
    pub fn applicable(&self, ip: IpAddr, ingress: bool, mode: Mode) -> Vec<(&Tier, Vec<&Policy>)> {
        let Some(ep) = self.endpoint_at(ip) else {
            return Vec::new();
        };
        self.endpoint_policies(ep)
            .get(mode, PolicyClass::Normal, ingress)
            .iter()
            .map(|s| {
                (
                    &self.tiers[s.tier],
                    s.policies.iter().map(|&i| &self.policies[i]).collect(),
                )
            })
            .collect()
    }

    pub(crate) fn tier_index(&self, name: &str) -> usize {
        self.tiers
            .iter()
            .position(|t| t.name == name)
            .unwrap_or(self.tiers.len().saturating_sub(1))
    }
}

#[derive(Default)]
struct Builder {
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
        resources.sort_by_key(|r| r.key());

        let mut tiers = well_known_tiers();
        for r in &resources {
            match r {
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
                        name: t.metadata.name.clone(),
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
        for r in &resources {
            match r {
                Resource::Pod(p) if !p.spec.host_network => endpoints.push(self.pod(p)?),
                Resource::WorkloadEndpoint(w) => endpoints.push(self.workload_endpoint(w)?),
                Resource::HostEndpoint(h) => endpoints.push(self.host_endpoint(h)?),
                Resource::GlobalNetworkSet(s) | Resource::NetworkSet(s) => {
                    network_sets.push(self.network_set(r.kind(), s)?)
                }
                _ => {}
            }
        }
        // Workloads own an address before hosts do.
        endpoints.sort_by_key(|e: &Endpoint| e.kind == EndpointKind::Host);
        let mut by_ip: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        for (i, e) in endpoints.iter().enumerate() {
            for ip in &e.ips {
                by_ip.entry(*ip).or_default().push(i);
            }
        }

        let tier_names: HashSet<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
        let (policies, deletions) = compile_policies(&resources, &tier_names)?;
        let mut rank_order: Vec<usize> = (0..policies.len()).collect();
        let tier_pos = |name: &str| {
            tiers
                .iter()
                .position(|t| t.name == name)
                .unwrap_or(usize::MAX)
        };
        rank_order.sort_by(|&a, &b| {
            let (pa, pb) = (&policies[a], &policies[b]);
            let order = |p: &Policy| p.order.unwrap_or(f64::INFINITY);
            tier_pos(&pa.tier)
                .cmp(&tier_pos(&pb.tier))
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
            if enforced[i] || pending[i] {
                index.insert(i, &p.selector);
            }
        }
        let has_staged = policies.iter().any(|p| p.staged.is_some()) || !replaced.is_empty();
        Ok(Cluster {
            endpoint_policies: (0..endpoints.len()).map(|_| OnceLock::new()).collect(),
            tiers,
            policies,
            rank,
            active: [enforced, pending],
            endpoints,
            network_sets,
            profiles: self.profiles,
            by_ip,
            index,
            has_staged,
        })
    }

    fn inherited(&self, profiles: &[String]) -> Vec<&LabelMap> {
        profiles
            .iter()
            .filter_map(|p| self.profile_labels.get(p))
            .collect()
    }

    fn pod(&self, p: &bulkhead_api::PodObject) -> Result<Endpoint, ModelError> {
        let ns = p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let sa = p
            .spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let profiles = vec![
            namespace_profile_name(&ns),
            service_account_profile_name(&ns, &sa),
        ];
        let special = workload_special_labels(&ns, Some("k8s"), Some(&sa));
        let labels = flatten_labels(&p.metadata.labels, &special, &self.inherited(&profiles));
        let who = format!("Pod {ns}/{}", p.metadata.name);
        let mut ips = Vec::new();
        let texts = p
            .status
            .pod_ips
            .iter()
            .map(|i| ("status.podIPs", &i.ip))
            .chain(p.status.pod_ip.iter().map(|i| ("status.podIP", i)));
        for (field, text) in texts {
            let ip = parse_ip(text, &who, field)?;
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        let ports = p
            .spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .filter_map(|cp| {
                Some(NamedPort {
                    name: cp.name.clone()?,
                    protocol: cp
                        .protocol
                        .as_deref()
                        .and_then(Protocol::parse)
                        .unwrap_or(Protocol::TCP),
                    port: cp.container_port,
                })
            })
            .collect();
        Ok(Endpoint {
            kind: EndpointKind::Workload,
            namespace: Some(ns),
            name: p.metadata.name.clone(),
            service_account: Some(sa),
            own_labels: p.metadata.labels.clone(),
            labels,
            profiles,
            ips,
            ports,
        })
    }

    fn workload_endpoint(
        &self,
        w: &bulkhead_api::Object<bulkhead_api::calico::WorkloadEndpointSpec>,
    ) -> Result<Endpoint, ModelError> {
        let ns = w
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let sa =
            (!w.spec.service_account_name.is_empty()).then(|| w.spec.service_account_name.clone());
        let profiles = if w.spec.profiles.is_empty() {
            let mut p = vec![namespace_profile_name(&ns)];
            p.extend(sa.iter().map(|sa| service_account_profile_name(&ns, sa)));
            p
        } else {
            w.spec.profiles.clone()
        };
        let orchestrator =
            (!w.spec.orchestrator.is_empty()).then_some(w.spec.orchestrator.as_str());
        let special = workload_special_labels(&ns, orchestrator, sa.as_deref());
        let labels = flatten_labels(&w.metadata.labels, &special, &self.inherited(&profiles));
        let who = format!("WorkloadEndpoint {ns}/{}", w.metadata.name);
        let ips = w
            .spec
            .ip_networks
            .iter()
            .map(|n| {
                parse_cidr(n)
                    .map(|n| n.addr())
                    .ok_or_else(|| ModelError::BadAddress {
                        endpoint: who.clone(),
                        field: "spec.ipNetworks".into(),
                        value: n.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Endpoint {
            kind: EndpointKind::Workload,
            namespace: Some(ns),
            name: w.metadata.name.clone(),
            service_account: sa,
            own_labels: w.metadata.labels.clone(),
            labels,
            profiles,
            ips,
            ports: named_ports(&w.spec.ports),
        })
    }

    fn host_endpoint(
        &self,
        h: &bulkhead_api::Object<bulkhead_api::calico::HostEndpointSpec>,
    ) -> Result<Endpoint, ModelError> {
        let labels = flatten_labels(
            &h.metadata.labels,
            &LabelMap::new(),
            &self.inherited(&h.spec.profiles),
        );
        let who = format!("HostEndpoint {}", h.metadata.name);
        let ips = h
            .spec
            .expected_ips
            .iter()
            .map(|t| parse_ip(t, &who, "spec.expectedIPs"))
            .collect::<Result<_, _>>()?;
        Ok(Endpoint {
            kind: EndpointKind::Host,
            namespace: None,
            name: h.metadata.name.clone(),
            service_account: None,
            own_labels: h.metadata.labels.clone(),
            labels,
            profiles: h.spec.profiles.clone(),
            ips,
            ports: named_ports(&h.spec.ports),
        })
    }

    fn network_set(
        &self,
        kind: Kind,
        s: &bulkhead_api::Object<bulkhead_api::calico::NetworkSetSpec>,
    ) -> Result<NetworkSet, ModelError> {
        let namespace = (kind == Kind::NetworkSet).then(|| {
            s.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into())
        });
        let labels = match &namespace {
            Some(ns) => {
                let mut special = LabelMap::new();
                special.insert(NAMESPACE_LABEL.into(), ns.clone());
                let profile = [namespace_profile_name(ns)];
                flatten_labels(&s.metadata.labels, &special, &self.inherited(&profile))
            }
            None => s.metadata.labels.clone(),
        };
        let nets = s
            .spec
            .nets
            .iter()
            .map(|n| {
                parse_cidr(n).ok_or_else(|| ModelError::BadAddress {
                    endpoint: format!("{} {}", kind.kind_name(), s.metadata.name),
                    field: "spec.nets".into(),
                    value: n.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(NetworkSet {
            namespace,
            name: s.metadata.name.clone(),
            labels,
            nets,
        })
    }
}

fn named_ports(ports: &[EndpointPort]) -> Vec<NamedPort> {
    ports
        .iter()
        .map(|p| NamedPort {
            name: p.name.clone(),
            protocol: p.protocol,
            port: p.port,
        })
        .collect()
}

fn parse_ip(text: &str, who: &str, field: &str) -> Result<IpAddr, ModelError> {
    text.parse().map_err(|_| ModelError::BadAddress {
        endpoint: who.to_string(),
        field: field.to_string(),
        value: text.to_string(),
    })
}

fn enforced_ref(id: &PolicyRef) -> PolicyRef {
    PolicyRef {
        kind: id.kind.enforced(),
        ..id.clone()
    }
}

/// Compiles every policy resource; returns the policies and the enforced policies that
/// staged `Delete` policies would remove.
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
        let namespace = meta.namespace.as_deref().filter(|_| kind.is_namespaced());
        let id = PolicyRef {
            kind,
            namespace: namespace.map(str::to_string),
            name: meta.name.clone(),
        };
        let check_tier = |tier: &str| {
            if tiers.contains(tier) {
                Ok(())
            } else {
                Err(ModelError::MissingTier {
                    policy: format!("{} {}", kind.kind_name(), id_path(&id)),
                    tier: tier.to_string(),
                })
            }
        };
        let base = |tier: &'static str| PolicyInput {
            kind,
            namespace,
            name: &meta.name,
            tier,
            order: None,
            selector: None,
            namespace_selector: None,
            service_account_selector: None,
            types: &[],
            ingress: &[],
            egress: &[],
            staged: None,
            class: PolicyClass::Normal,
        };
        let staged_delete =
            |action: Option<StagedAction>| kind.is_staged() && action == Some(StagedAction::Delete);
        match r {
            Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
                if staged_delete(o.spec.staged_action) {
                    deletions.push(enforced_ref(&id));
                    continue;
                }
                let s = &o.spec;
                let tier = s.tier.as_deref().unwrap_or(DEFAULT_TIER);
                check_tier(tier)?;
                let class = if s.do_not_track {
                    PolicyClass::Untracked
                } else if s.pre_dnat {
                    PolicyClass::PreDnat
                } else {
                    PolicyClass::Normal
                };
                policies.push(compile_policy(PolicyInput {
                    tier,
                    order: s.order,
                    selector: s.selector.as_deref(),
                    namespace_selector: s.namespace_selector.as_deref(),
                    service_account_selector: s.service_account_selector.as_deref(),
                    types: &s.types,
                    ingress: &s.ingress,
                    egress: &s.egress,
                    staged: kind
                        .is_staged()
                        .then(|| s.staged_action.unwrap_or_default()),
                    class,
                    ..base("")
                })?);
            }
            Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => {
                if staged_delete(o.spec.staged_action) {
                    deletions.push(enforced_ref(&id));
                    continue;
                }
                let s = &o.spec;
                let tier = s.tier.as_deref().unwrap_or(DEFAULT_TIER);
                check_tier(tier)?;
                policies.push(compile_policy(PolicyInput {
                    tier,
                    order: s.order,
                    selector: s.selector.as_deref(),
                    service_account_selector: s.service_account_selector.as_deref(),
                    types: &s.types,
                    ingress: &s.ingress,
                    egress: &s.egress,
                    staged: kind
                        .is_staged()
                        .then(|| s.staged_action.unwrap_or_default()),
                    ..base("")
                })?);
            }
            Resource::KubernetesNetworkPolicy(o) | Resource::StagedKubernetesNetworkPolicy(o) => {
                if staged_delete(o.spec.staged_action) {
                    deletions.push(enforced_ref(&id));
                    continue;
                }
                let converted = k8s_to_calico(&o.spec);
                policies.push(compile_policy(PolicyInput {
                    order: Some(K8S_POLICY_ORDER),
                    selector: converted.selector.as_deref(),
                    types: &converted.types,
                    ingress: &converted.ingress,
                    egress: &converted.egress,
                    staged: kind
                        .is_staged()
                        .then(|| o.spec.staged_action.unwrap_or_default()),
                    ..base(DEFAULT_TIER)
                })?);
            }
            _ => {}
        }
    }
    Ok((policies, deletions))
}

fn id_path(id: &PolicyRef) -> String {
    match &id.namespace {
        Some(ns) => format!("{ns}/{}", id.name),
        None => id.name.clone(),
    }
}
