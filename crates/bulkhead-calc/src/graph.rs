//! The calculation graph: state, the update dispatcher, and what an update does before
//! the flush.
//!
//! [`CalcGraph::apply`] is cheap and does no I/O. It routes each update by kind and does
//! the work that keeps the indexes true at once (label flattening, IP set membership,
//! policy matches against local endpoints); everything that can be coalesced (tier lists,
//! chain rendering, set elements, the table) waits for [`CalcGraph::flush`] behind a dirty
//! set, so a burst of updates to one object costs one recomputation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bulkhead_api::{Kind, ObjectMeta, Resource, ResourceKey};
use bulkhead_dataplane::render::{
    HostInterfaces, LocalEndpoint, RenderConfig, WL_FROM, WL_TO, dispatch_chains,
    policy_chain_names, profile_chain_name,
};
use bulkhead_dataplane::rules::SetRequest;
use bulkhead_dataplane::table::Table;
use bulkhead_engine::EndpointKind;
use bulkhead_engine::compile::PolicyClass;
use bulkhead_engine::endpoint::{Endpoint, NetworkSet};
use bulkhead_engine::host_defaults::{HostDefaults, HostDefaultsByNode, HostDefaultsLayer};
use bulkhead_engine::incremental;
use bulkhead_engine::interner::LabelInterner;
use ipnet::IpNet;

use crate::ItemId;
use crate::active_rules::ActiveRulesCalculator;
use crate::inherit::InheritIndex;
use crate::ipsets::{IpSetIndex, ItemView, SourceId};
use crate::sequencer::TableSequencer;

/// Which node the graph calculates for, and how the node names things.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name: endpoints whose `spec.nodeName` (Pods) or `spec.node`
    /// (WorkloadEndpoints, HostEndpoints) is this name are local.
    pub node: String,
    /// Naming of the node's table (workload interface prefix). Its `host_defaults` are
    /// the graph's to set: from the FelixConfigurations that apply to the node, under
    /// [`CalcGraph::override_host_defaults`].
    pub render: RenderConfig,
}

/// One change from the datastore.
///
/// `Upsert` is as large as a [`Resource`]; updates are consumed as they arrive, never
/// stored in bulk, so boxing would only add an allocation per update.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Update {
    /// A resource was created or replaced (validated and defaulted, as the loader and the
    /// server give them).
    Upsert(Resource),
    /// The resource with this key is gone (a key that does not exist is ignored).
    Delete(ResourceKey),
}

/// What the graph holds, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Endpoints and network sets of the whole cluster (host-network pods included).
    pub items: usize,
    /// Endpoints enforced on this node.
    pub local_endpoints: usize,
    /// Enforced policies (parked ones included).
    pub policies: usize,
    /// Policy and profile chains in the table.
    pub policy_chains: usize,
    /// Active IP set sources (a selector or named port used by a rendered rule).
    pub ip_set_sources: usize,
}

/// An endpoint or network set: the parents it inherits from, the namespace and service
/// account it implies, and what the model makes of it. The resource itself is not kept:
/// a parent's change relabels the model's endpoint or set from its own fields.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) parents: Vec<String>,
    pub(crate) implied: Implied,
    pub(crate) data: ItemData,
}

/// The namespace and service account a resource makes exist
/// ([`incremental::implied_namespace`], [`incremental::implied_service_account`]).
#[derive(Debug, Default)]
pub(crate) struct Implied {
    namespace: Option<String>,
    service_account: Option<(String, String)>,
}

impl Implied {
    fn of(r: &Resource) -> Implied {
        Implied {
            namespace: incremental::implied_namespace(r),
            service_account: incremental::implied_service_account(r),
        }
    }
}

#[derive(Debug)]
pub(crate) enum ItemData {
    Endpoint(Endpoint),
    NetworkSet(NetworkSet),
    /// A host-network pod: implies its namespace and service account, is no endpoint.
    Inert,
}

impl Item {
    pub(crate) fn view(&self) -> Option<ItemView<'_>> {
        self.data.view()
    }

    pub(crate) fn endpoint(&self) -> Option<&Endpoint> {
        match &self.data {
            ItemData::Endpoint(e) => Some(e),
            _ => None,
        }
    }
}

impl ItemData {
    pub(crate) fn view(&self) -> Option<ItemView<'_>> {
        match self {
            ItemData::Endpoint(e) => Some(ItemView {
                labels: &e.labels,
                nets: e.ips.iter().map(|ip| IpNet::from(*ip)).collect(),
                ips: &e.ips,
                ports: &e.ports,
            }),
            ItemData::NetworkSet(s) => Some(ItemView {
                labels: &s.labels,
                nets: s.nets.iter().map(IpNet::trunc).collect(),
                ips: &[],
                ports: &[],
            }),
            ItemData::Inert => None,
        }
    }
}

/// `LocalEndpoint::order_key`, owned.
pub(crate) type OrderKey = (Option<String>, String, bool, String);

pub(crate) fn order_key(l: &LocalEndpoint) -> OrderKey {
    let (ns, name, host, iface) = l.order_key();
    (
        ns.map(str::to_string),
        name.to_string(),
        host,
        iface.to_string(),
    )
}

/// What a chain that endpoint chains jump to renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChainSource {
    /// Enforced policy (by key), as an endpoint's list of this class uses it, ingress?
    Policy(ResourceKey, PolicyClass, bool),
    /// Profile (by name), ingress?
    Profile(String, bool),
    /// A dispatch class chain: its rules (its name is their hash, so they never change).
    Class(Vec<String>),
}

/// A local endpoint's rendered chains and the chains they jump to.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub(crate) ingress: Vec<String>,
    pub(crate) egress: Vec<String>,
    /// A host endpoint's untracked, pre-DNAT and forwarded-traffic chains, by name.
    pub(crate) phases: Vec<(String, Vec<String>)>,
    pub(crate) chains: Vec<(String, ChainSource)>,
}

#[derive(Debug)]
pub(crate) struct LocalState {
    pub(crate) local: LocalEndpoint,
    /// False once it stopped being local; the flush then drops it.
    pub(crate) present: bool,
    pub(crate) rendered: Rendered,
}

/// A policy or profile chain in the table, with the endpoint chains that jump to it.
#[derive(Debug)]
pub(crate) struct ChainState {
    pub(crate) refs: usize,
    pub(crate) source: ChainSource,
    /// Sets its rules refer to.
    pub(crate) sets: Vec<String>,
}

/// A set in the table, with the chains whose rules refer to it.
#[derive(Debug)]
pub(crate) struct SetState {
    pub(crate) refs: usize,
    pub(crate) request: SetRequest,
    pub(crate) source: SourceId,
}

/// Incremental calculation of one node's table.
///
/// Feed it every update ([`CalcGraph::apply`]), in any order, and call
/// [`CalcGraph::flush`] whenever the dataplane should catch up. After any sequence of
/// updates and a flush, [`CalcGraph::table`] equals what
/// `bulkhead_dataplane::render(&Cluster::build(current resources), &local_endpoints(…),
/// &config)` gives (the property test in `tests/incremental.rs` checks exactly this),
/// with two sanctioned differences for input the model rejects: a resource that does
/// not compile is treated as deleted, and a policy whose tier does not exist is parked
/// until it does (both listed by [`CalcGraph::errors`]).
#[derive(Debug)]
pub struct CalcGraph {
    pub(crate) config: NodeConfig,
    pub(crate) items: HashMap<ItemId, Item>,
    pub(crate) item_ids: HashMap<ResourceKey, ItemId>,
    pub(crate) next_item: u32,
    pub(crate) inherit: InheritIndex,
    /// The label maps of `items`, one copy of each.
    pub(crate) labels: LabelInterner,
    pub(crate) rules: ActiveRulesCalculator,
    pub(crate) ipsets: IpSetIndex,
    pub(crate) locals: HashMap<ItemId, LocalState>,
    pub(crate) dirty_locals: BTreeSet<ItemId>,
    pub(crate) chains: HashMap<String, ChainState>,
    pub(crate) dirty_chains: BTreeSet<String>,
    pub(crate) sets: HashMap<String, SetState>,
    pub(crate) source_sets: HashMap<SourceId, BTreeSet<String>>,
    pub(crate) new_sets: BTreeSet<String>,
    pub(crate) released_sets: BTreeSet<String>,
    pub(crate) ifaces: HashMap<String, BTreeMap<OrderKey, ItemId>>,
    pub(crate) dirty_ifaces: BTreeSet<String>,
    pub(crate) hosts: BTreeMap<OrderKey, ItemId>,
    pub(crate) hosts_dirty: bool,
    /// The FelixConfigurations and the overrides the node's `host_defaults` come from.
    pub(crate) host_defaults: HostDefaultsByNode,
    /// [`CalcGraph::host_placement`].
    pub(crate) placement: Vec<(String, String)>,
    pub(crate) seq: TableSequencer,
    pub(crate) errors: BTreeMap<ResourceKey, String>,
}

impl CalcGraph {
    /// A graph for `config.node` with no resources: its table is the one an empty
    /// cluster renders to (the `forward` chain, empty dispatch maps); the first flush
    /// emits it.
    ///
    /// ```text
    ///  apply(update) ──► dispatch by kind
    ///     Namespace, ServiceAccount, Profile ──► InheritIndex ──► re-flatten children
    ///     Pod, WorkloadEndpoint, HostEndpoint,      │ labels          │
    ///     (Global)NetworkSet ──► items ─────────────┴─────────────────┤
    ///                              │ every item                       │ local endpoints
    ///                              ▼                                  ▼
    ///                        IpSetIndex                   ActiveRulesCalculator ◄── policies, tiers
    ///                  (members, ref-counted)             (policy ↔ local matches)
    ///                              │ dirty sources                    │ dirty endpoints
    ///  flush() ────────────────────┼──────────────────────────────────┤
    ///     1. endpoint chains of dirty local endpoints (tier lists) ◄──┘
    ///     2. policy/profile chains whose references or rules changed ──► set requests
    ///     3. sets released / acquired (acquire scans candidates)
    ///     4. elements of new and dirty sets
    ///     5. dispatch (wl_from, wl_to) and host base chains
    ///     6. TableSequencer ──► Delta (sets → chains → maps; removals reversed)
    /// ```
    pub fn new(mut config: NodeConfig) -> CalcGraph {
        let host_defaults = HostDefaultsByNode::default();
        config.render.host_defaults = host_defaults.of(Some(&config.node)).clone();
        let mut seq = TableSequencer::default();
        for (name, chain) in dispatch_chains(&config.render, false) {
            seq.put_chain(&name, chain);
        }
        seq.put_map(WL_FROM);
        seq.put_map(WL_TO);
        CalcGraph {
            config,
            items: HashMap::new(),
            item_ids: HashMap::new(),
            next_item: 0,
            inherit: InheritIndex::default(),
            labels: LabelInterner::default(),
            rules: ActiveRulesCalculator::default(),
            ipsets: IpSetIndex::default(),
            locals: HashMap::new(),
            dirty_locals: BTreeSet::new(),
            chains: HashMap::new(),
            dirty_chains: BTreeSet::new(),
            sets: HashMap::new(),
            source_sets: HashMap::new(),
            new_sets: BTreeSet::new(),
            released_sets: BTreeSet::new(),
            ifaces: HashMap::new(),
            dirty_ifaces: BTreeSet::new(),
            hosts: BTreeMap::new(),
            hosts_dirty: false,
            host_defaults,
            placement: Vec::new(),
            seq,
            errors: BTreeMap::new(),
        }
    }

    /// Takes one update. Cheap: no I/O, no rendering; see [`CalcGraph::flush`].
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Upsert(r) => self.upsert(r),
            Update::Delete(key) => self.delete(&key),
        }
    }

    /// The node's interfaces and their addresses changed (the agent reads them): host
    /// endpoints without `interfaceName` are resolved anew at the next flush. Returns
    /// whether that can change the table.
    pub fn set_host_interfaces(&mut self, interfaces: HostInterfaces) -> bool {
        if self.config.render.host_interfaces == interfaces {
            return false;
        }
        self.config.render.host_interfaces = interfaces;
        let matters = self.needs_host_interfaces();
        self.hosts_dirty |= matters;
        matters
    }

    /// Sets the settings that win over the node's FelixConfigurations (the agent's
    /// flags); the table follows at the next flush.
    pub fn override_host_defaults(&mut self, overrides: HostDefaultsLayer) {
        self.host_defaults.set_overrides(overrides);
        self.refresh_host_defaults();
    }

    /// The node's settings around the policies (failsafe ports,
    /// `DefaultEndpointToHostAction`) as the table enforces them after the next flush.
    pub fn host_defaults(&self) -> &HostDefaults {
        &self.config.render.host_defaults
    }

    /// Takes the node's settings anew; if they changed, the chains that carry them
    /// (dispatch and host base chains) are rendered again at the next flush.
    fn refresh_host_defaults(&mut self) {
        let now = self.host_defaults.of(Some(&self.config.node));
        if *now != self.config.render.host_defaults {
            self.config.render.host_defaults = now.clone();
            self.hosts_dirty = true;
        }
    }

    /// Which local host endpoint governs which interface (`*`: every other host
    /// interface), by interface, as of the last flush (which resolves them when the host
    /// endpoints or the interface addresses change).
    pub fn host_placement(&self) -> &[(String, String)] {
        &self.placement
    }

    /// Whether a local host endpoint is placed by its `expectedIPs` (no `interfaceName`),
    /// so the table depends on the node's interface addresses.
    pub fn needs_host_interfaces(&self) -> bool {
        local_hosts(&self.hosts, &self.locals)
            .iter()
            .any(|h| h.interface.is_empty())
    }

    /// The intended table as of the last flush.
    pub fn table(&self) -> &Table {
        self.seq.table()
    }

    /// Resources the graph could not use, and why: resources that do not compile (treated
    /// as deleted) and policies whose tier does not exist (parked until it does).
    pub fn errors(&self) -> Vec<(ResourceKey, String)> {
        let mut out: Vec<(ResourceKey, String)> = self
            .errors
            .iter()
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        out.extend(self.rules.parked().map(|(k, tier)| {
            (
                k.clone(),
                format!("spec.tier: tier {tier:?} does not exist; the policy waits for it"),
            )
        }));
        out.sort();
        out
    }

    /// The endpoints enforced on this node, in `LocalEndpoint::order_key` order.
    pub fn local_endpoints(&self) -> Vec<LocalEndpoint> {
        let mut out: Vec<LocalEndpoint> = self
            .locals
            .values()
            .filter(|l| l.present)
            .map(|l| l.local.clone())
            .collect();
        out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        out
    }

    /// Sizes of what the graph holds.
    pub fn stats(&self) -> Stats {
        Stats {
            items: self.items.len(),
            local_endpoints: self.locals.values().filter(|l| l.present).count(),
            policies: self.rules.len(),
            policy_chains: self.chains.len(),
            ip_set_sources: self.ipsets.active(),
        }
    }

    fn upsert(&mut self, r: Resource) {
        let key = r.key();
        match &r {
            Resource::Namespace(m) => {
                let changed = self
                    .inherit
                    .set_namespace(&m.name, Some(incremental::namespace_labels(m)));
                self.propagate(changed, None);
            }
            Resource::ServiceAccount(m) => {
                let changed = self.inherit.set_service_account(
                    incremental::service_account_key(m),
                    Some(m.labels.clone()),
                );
                self.propagate(changed, None);
            }
            Resource::Profile(p) => match incremental::profile(p) {
                Ok(profile) => {
                    self.errors.remove(&key);
                    let labels = p.spec.labels_to_apply.clone();
                    let changed = self
                        .inherit
                        .set_profile(&p.metadata.name, Some((labels, profile)));
                    self.propagate(changed, None);
                }
                Err(e) => {
                    self.errors.insert(key, e.to_string());
                    let changed = self.inherit.set_profile(&p.metadata.name, None);
                    self.propagate(changed, None);
                }
            },
            Resource::Tier(t) => {
                let dirty = self
                    .rules
                    .set_tier(&t.metadata.name, Some(incremental::tier(t)));
                self.dirty_locals.extend(dirty);
            }
            Resource::GlobalNetworkPolicy(_)
            | Resource::NetworkPolicy(_)
            | Resource::KubernetesNetworkPolicy(_) => self.upsert_policy(key, &r),
            Resource::StagedGlobalNetworkPolicy(_)
            | Resource::StagedNetworkPolicy(_)
            | Resource::StagedKubernetesNetworkPolicy(_) => {
                // Staged policies never reach the dataplane; only report what the model
                // would refuse.
                match incremental::policy(&r) {
                    Ok(_) => self.errors.remove(&key),
                    Err(e) => self.errors.insert(key, e.to_string()),
                };
            }
            Resource::Pod(_)
            | Resource::WorkloadEndpoint(_)
            | Resource::HostEndpoint(_)
            | Resource::GlobalNetworkSet(_)
            | Resource::NetworkSet(_) => self.upsert_item(key, r),
            Resource::FelixConfiguration(f) => {
                let layer = HostDefaultsLayer::from_spec(&f.spec);
                if self.host_defaults.set_configuration(&key.name, Some(layer)) {
                    self.refresh_host_defaults();
                }
            }
            // A node's addresses tell the evaluator which traffic is between a host and
            // its own workloads; the kernel knows its own addresses.
            Resource::Node(_) => {}
        }
    }

    fn delete(&mut self, key: &ResourceKey) {
        self.errors.remove(key);
        match key.kind {
            Kind::Namespace => {
                let changed = self.inherit.set_namespace(&key.name, None);
                self.propagate(changed, None);
            }
            Kind::ServiceAccount => {
                let meta = ObjectMeta {
                    name: key.name.clone(),
                    namespace: key.namespace.clone(),
                    ..ObjectMeta::default()
                };
                let changed = self
                    .inherit
                    .set_service_account(incremental::service_account_key(&meta), None);
                self.propagate(changed, None);
            }
            Kind::Profile => {
                let changed = self.inherit.set_profile(&key.name, None);
                self.propagate(changed, None);
            }
            Kind::Tier => {
                let dirty = self.rules.set_tier(&key.name, None);
                self.dirty_locals.extend(dirty);
            }
            Kind::GlobalNetworkPolicy | Kind::NetworkPolicy | Kind::KubernetesNetworkPolicy => {
                let dirty = self.rules.delete_policy(key);
                self.dirty_locals.extend(dirty);
            }
            Kind::StagedGlobalNetworkPolicy
            | Kind::StagedNetworkPolicy
            | Kind::StagedKubernetesNetworkPolicy => {}
            Kind::Pod
            | Kind::WorkloadEndpoint
            | Kind::HostEndpoint
            | Kind::GlobalNetworkSet
            | Kind::NetworkSet => self.delete_item(key),
            Kind::FelixConfiguration => {
                if self.host_defaults.set_configuration(&key.name, None) {
                    self.refresh_host_defaults();
                }
            }
            Kind::Node => {}
        }
    }

    fn upsert_policy(&mut self, key: ResourceKey, r: &Resource) {
        let compiled = match incremental::policy(r) {
            Ok(p) => p,
            Err(e) => {
                self.errors.insert(key.clone(), e.to_string());
                let dirty = self.rules.delete_policy(&key);
                self.dirty_locals.extend(dirty);
                return;
            }
        };
        self.errors.remove(&key);
        match compiled {
            Some(p) => {
                for name in policy_chain_names(&p.id) {
                    if self.chains.contains_key(&name) {
                        self.dirty_chains.insert(name);
                    }
                }
                let dirty = self.rules.upsert_policy(key, p);
                self.dirty_locals.extend(dirty);
            }
            None => {
                let dirty = self.rules.delete_policy(&key);
                self.dirty_locals.extend(dirty);
            }
        }
    }

    /// What the model makes of an item resource, with the parents' current labels.
    fn convert(inherit: &InheritIndex, r: &Resource) -> Result<ItemData, String> {
        let labels_of = |p: &str| inherit.labels_of(p);
        if let Some(e) = incremental::endpoint(r, labels_of).map_err(|e| e.to_string())? {
            return Ok(ItemData::Endpoint(e));
        }
        if let Some(s) = incremental::network_set(r, labels_of).map_err(|e| e.to_string())? {
            return Ok(ItemData::NetworkSet(s));
        }
        Ok(ItemData::Inert)
    }

    fn upsert_item(&mut self, key: ResourceKey, r: Resource) {
        // Whether it converts does not depend on the parents: check before touching
        // anything, and treat a resource the model refuses as deleted.
        if let Err(e) = Self::convert(&InheritIndex::default(), &r) {
            self.errors.insert(key.clone(), e);
            self.delete_item(&key);
            return;
        }
        let id = match self.item_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = ItemId(self.next_item);
                self.next_item += 1;
                self.item_ids.insert(key, id);
                id
            }
        };
        let old = self.items.remove(&id);
        let parents = incremental::parent_profiles(&r);
        let old_parents = old.as_ref().map(|o| o.parents.as_slice()).unwrap_or(&[]);
        self.inherit.set_parents(id, old_parents, &parents);
        // Implications of the new version first, so that a namespace both versions
        // imply never stops existing on the way.
        let implied = Implied::of(&r);
        let mut changed = self.imply(&implied, 1);
        if let Some(o) = &old {
            changed.extend(self.imply(&o.implied, -1));
        }
        let data = match Self::convert(&self.inherit, &r) {
            Ok(d) => self.interned(d),
            Err(_) => ItemData::Inert,
        };
        let local = matches!(data, ItemData::Endpoint(_))
            .then(|| {
                LocalEndpoint::for_node(&r, &self.config.node, &self.config.render.workload_prefix)
            })
            .flatten();
        let item = Item {
            parents,
            implied,
            data,
        };
        self.ipsets.update_item(
            id,
            old.as_ref().and_then(Item::view).as_ref(),
            item.view().as_ref(),
        );
        self.items.insert(id, item);
        self.set_local(id, local);
        self.propagate(changed, Some(id));
    }

    fn delete_item(&mut self, key: &ResourceKey) {
        let Some(id) = self.item_ids.remove(key) else {
            return;
        };
        let Some(old) = self.items.remove(&id) else {
            return;
        };
        self.ipsets.update_item(id, old.view().as_ref(), None);
        self.inherit.set_parents(id, &old.parents, &[]);
        self.set_local(id, None);
        let changed = self.imply(&old.implied, -1);
        self.propagate(changed, None);
    }

    /// `data` with its label maps replaced by the shared ones.
    fn interned(&mut self, data: ItemData) -> ItemData {
        match data {
            ItemData::Endpoint(e) => ItemData::Endpoint(self.labels.endpoint(e)),
            ItemData::NetworkSet(s) => ItemData::NetworkSet(self.labels.network_set(s)),
            ItemData::Inert => ItemData::Inert,
        }
    }

    /// Adds (`+1`) or drops (`-1`) the namespace and service account an item implies.
    fn imply(&mut self, implied: &Implied, delta: isize) -> Vec<String> {
        let mut changed = Vec::new();
        if let Some(ns) = &implied.namespace {
            changed.extend(self.inherit.imply_namespace(ns, delta));
        }
        if let Some(sa) = &implied.service_account {
            changed.extend(self.inherit.imply_service_account(sa.clone(), delta));
        }
        changed
    }

    /// Item `id` is local as `local`, or not (`None`).
    fn set_local(&mut self, id: ItemId, local: Option<LocalEndpoint>) {
        if let Some(state) = self.locals.get_mut(&id)
            && state.present
        {
            let old = state.local.clone();
            state.present = false;
            self.unregister(id, &old);
        }
        match local {
            Some(local) => {
                let labels = self
                    .items
                    .get(&id)
                    .and_then(Item::endpoint)
                    .map(|e| e.labels.clone())
                    .unwrap_or_default();
                self.rules.upsert_local(id, &labels);
                self.register(id, &local);
                let state = self.locals.entry(id).or_insert_with(|| LocalState {
                    local: local.clone(),
                    present: true,
                    rendered: Rendered::default(),
                });
                state.local = local;
                state.present = true;
                self.dirty_locals.insert(id);
            }
            None => {
                if self.locals.contains_key(&id) {
                    self.rules.remove_local(id);
                    self.dirty_locals.insert(id);
                }
            }
        }
    }

    fn register(&mut self, id: ItemId, local: &LocalEndpoint) {
        match local.kind {
            EndpointKind::Workload => {
                self.ifaces
                    .entry(local.interface.clone())
                    .or_default()
                    .insert(order_key(local), id);
                self.dirty_ifaces.insert(local.interface.clone());
            }
            EndpointKind::Host => {
                self.hosts.insert(order_key(local), id);
                self.hosts_dirty = true;
            }
        }
    }

    fn unregister(&mut self, id: ItemId, local: &LocalEndpoint) {
        match local.kind {
            EndpointKind::Workload => {
                if let Some(owners) = self.ifaces.get_mut(&local.interface) {
                    owners.retain(|_, v| *v != id);
                    if owners.is_empty() {
                        self.ifaces.remove(&local.interface);
                    }
                }
                self.dirty_ifaces.insert(local.interface.clone());
            }
            EndpointKind::Host => {
                self.hosts.retain(|_, v| *v != id);
                self.hosts_dirty = true;
            }
        }
    }

    /// Parents `changed` have new labels or rules: re-flatten their children (except
    /// `skip`, already up to date), recompute the local ones' chains (a profile may have
    /// appeared or gone), and re-render the profiles' chains.
    fn propagate(&mut self, mut changed: Vec<String>, skip: Option<ItemId>) {
        changed.sort();
        changed.dedup();
        for name in changed {
            let children: Vec<ItemId> = self
                .inherit
                .children(&name)
                .filter(|c| Some(*c) != skip)
                .collect();
            for child in children {
                self.reflatten(child);
                if self.locals.get(&child).is_some_and(|l| l.present) {
                    self.dirty_locals.insert(child);
                }
            }
            for ingress in [true, false] {
                let chain = profile_chain_name(&name, ingress);
                if self.chains.contains_key(&chain) {
                    self.dirty_chains.insert(chain);
                }
            }
        }
    }

    /// Relabels item `id` with its parents' current labels.
    fn reflatten(&mut self, id: ItemId) {
        let Some(item) = self.items.get(&id) else {
            return;
        };
        let labels_of = |p: &str| self.inherit.labels_of(p);
        let data = match &item.data {
            ItemData::Endpoint(e) => {
                let labels = incremental::endpoint_labels(e, labels_of);
                if labels == *e.labels {
                    return;
                }
                let labels = self.labels.intern_map(labels);
                ItemData::Endpoint(Endpoint {
                    labels,
                    ..e.clone()
                })
            }
            ItemData::NetworkSet(s) => {
                let labels = incremental::network_set_labels(s, labels_of);
                if labels == *s.labels {
                    return;
                }
                let labels = self.labels.intern_map(labels);
                ItemData::NetworkSet(NetworkSet {
                    labels,
                    ..s.clone()
                })
            }
            ItemData::Inert => return,
        };
        self.ipsets
            .update_item(id, item.view().as_ref(), data.view().as_ref());
        if self.locals.get(&id).is_some_and(|l| l.present)
            && let ItemData::Endpoint(e) = &data
            && self.rules.upsert_local(id, &e.labels)
        {
            self.dirty_locals.insert(id);
        }
        if let Some(slot) = self.items.get_mut(&id) {
            slot.data = data;
        }
    }
}

/// The host endpoints enforced on the node (`hosts`, in order), as `locals` holds them.
pub(crate) fn local_hosts<'a>(
    hosts: &'a BTreeMap<OrderKey, ItemId>,
    locals: &'a HashMap<ItemId, LocalState>,
) -> Vec<&'a LocalEndpoint> {
    hosts
        .values()
        .filter_map(|id| locals.get(id))
        .map(|s| &s.local)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bulkhead_engine::endpoint::Labels;

    use super::*;

    fn wep(name: &str, app: &str) -> Resource {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: ns, labels: {{app: {app}}}}}\nspec: {{node: other, interfaceName: cali{name}, ipNetworks: [10.65.0.1/32]}}\n"
        );
        bulkhead_api::load_str("t.yaml", &text)
            .expect("loads")
            .remove(0)
            .resource
    }

    fn labels_of(graph: &CalcGraph, name: &str) -> Labels {
        let key = wep(name, "x").key();
        let id = graph.item_ids[&key];
        graph.items[&id]
            .endpoint()
            .expect("an endpoint")
            .labels
            .clone()
    }

    #[test]
    fn endpoints_with_equal_labels_share_one_map_and_a_relabel_keeps_sharing() {
        let mut graph = CalcGraph::new(NodeConfig {
            node: "n1".into(),
            render: RenderConfig::default(),
        });
        for (name, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
            graph.apply(Update::Upsert(wep(name, app)));
        }
        assert!(Arc::ptr_eq(
            &labels_of(&graph, "a"),
            &labels_of(&graph, "b")
        ));
        assert!(!Arc::ptr_eq(
            &labels_of(&graph, "a"),
            &labels_of(&graph, "c")
        ));
        // The namespace's labels change every endpoint's flattened labels.
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns, labels: {env: prod}}\n";
        let ns = bulkhead_api::load_str("t.yaml", ns)
            .expect("loads")
            .remove(0);
        graph.apply(Update::Upsert(ns.resource));
        let a = labels_of(&graph, "a");
        assert_eq!(a.get("pcns.env").map(String::as_str), Some("prod"));
        assert!(Arc::ptr_eq(&a, &labels_of(&graph, "b")));
    }
}
