//! The flush: everything `apply` deferred, in dependency order.

use std::collections::{BTreeSet, HashMap};

use bulkhead_dataplane::render::{
    EARLY_CLASSES, HOST_BASE_CHAINS, ProfileChain, TierChains, WL_FROM, WL_TO, WL_TO_HOST,
    WorkloadChains, allow_verdict, dispatch_chains, early_chain, endpoint_chains,
    endpoint_profiles, forwarded_chain, host_base_chains, host_chain_name, policy_chain,
    policy_chain_name, profile_chain, resolve_host_endpoints,
};
use bulkhead_dataplane::rules::{SetRequest, SetRequests};
use bulkhead_dataplane::table::Chain;
use bulkhead_engine::EndpointKind;
use bulkhead_engine::compile::PolicyClass;

use crate::ItemId;
use crate::graph::{CalcGraph, ChainSource, ChainState, Item, Rendered, SetState, local_hosts};
use crate::ipsets::{IpSetIndex, SourceId};
use crate::sequencer::Delta;

impl CalcGraph {
    /// Brings the table up to date with every update applied so far and returns what
    /// changed, in the order a dataplane can apply it ([`Delta`]).
    ///
    /// Order of work, each step feeding the next:
    /// 1. endpoint chains of the dirty local endpoints: their tier lists are recomputed
    ///    and rendered; the policy and profile chains they jump to are reference counted
    ///    (endpoints that stopped being local are dropped first, so that one coming back
    ///    under the same name in the same flush wins);
    /// 2. policy and profile chains whose reference count reached zero are removed, the
    ///    others that are new or whose rules changed are rendered; the sets their rules
    ///    use are reference counted (a set's source is acquired on first use);
    /// 3. sets no rule uses any more are removed and their sources released;
    /// 4. the elements of new sets and of sets whose members changed are computed;
    /// 5. workload dispatch (`wl_from`, `wl_to`, `w.<if>.*`) for the
    ///    interfaces whose owner or chains changed, and the host base chains;
    /// 6. the sequencer compares every touched object with its value before the flush.
    ///
    /// Only dirty objects are visited; nothing here scans all endpoints or policies.
    pub fn flush(&mut self) -> Delta {
        self.flush_endpoints();
        self.flush_chains();
        self.flush_released_sets();
        self.flush_set_elements();
        self.flush_dispatch();
        self.seq.finish()
    }

    fn flush_endpoints(&mut self) {
        let dirty = std::mem::take(&mut self.dirty_locals);
        let (gone, present): (Vec<ItemId>, Vec<ItemId>) = dirty
            .into_iter()
            .partition(|id| !self.locals.get(id).is_some_and(|l| l.present));
        for id in gone {
            let Some(state) = self.locals.remove(&id) else {
                continue;
            };
            for (name, _) in &state.rendered.chains {
                self.unref_chain(name);
            }
            if state.local.kind == EndpointKind::Host {
                for ingress in [true, false] {
                    let name = host_chain_name(&state.local.name, PolicyClass::Normal, ingress);
                    self.seq.remove_chain(&name);
                }
                for (name, _) in &state.rendered.phases {
                    self.seq.remove_chain(name);
                }
            }
        }
        for id in present {
            self.resolve(id);
        }
    }

    /// Recomputes local endpoint `id`'s tier lists and chains.
    fn resolve(&mut self, id: ItemId) {
        let (Some(item), Some(state)) = (self.items.get(&id), self.locals.get(&id)) else {
            return;
        };
        let Some(endpoint) = item.endpoint() else {
            debug_assert!(false, "BUG: local item {id:?} is not an endpoint");
            return;
        };
        let kind = endpoint.kind;
        let mut rendered = Rendered::default();
        if kind == EndpointKind::Host {
            let tagging = self.config.render.tagging;
            for (class, ingress) in EARLY_CLASSES {
                let tiers = if endpoint.governed_by(class) {
                    self.tier_chains(id, class, ingress, &mut rendered)
                } else {
                    Vec::new()
                };
                let name = host_chain_name(&state.local.name, class, ingress);
                let rules = early_chain(&tiers, ingress, tagging);
                rendered.phases.push((name, rules));
            }
            for ingress in [true, false] {
                let tiers = self.tier_chains(id, PolicyClass::Forward, ingress, &mut rendered);
                let name = host_chain_name(&state.local.name, PolicyClass::Forward, ingress);
                let rules = forwarded_chain(&tiers, ingress, tagging);
                rendered.phases.push((name, rules));
            }
        }
        for ingress in [true, false] {
            let tiers = self.tier_chains(id, PolicyClass::Normal, ingress, &mut rendered);
            let profiles = endpoint_profiles(&endpoint.profiles, ingress, |name| {
                self.inherit.profile(name)
            });
            for (profile, name) in profiles.iter().zip(&endpoint.profiles) {
                if let ProfileChain::Exists(chain) = profile {
                    rendered.chains.push((
                        chain.clone(),
                        ChainSource::Profile(name.to_string(), ingress),
                    ));
                }
            }
            let allow = allow_verdict(kind, ingress);
            let tagging = self.config.render.tagging;
            let chains = endpoint_chains(&tiers, &profiles, allow, ingress, tagging);
            for (name, rules) in chains.classes {
                rendered.chains.push((name, ChainSource::Class(rules)));
            }
            if ingress {
                rendered.ingress = chains.rules;
            } else {
                rendered.egress = chains.rules;
            }
        }
        let local = state.local.clone();
        for (name, source) in &rendered.chains {
            self.ref_chain(name, source);
        }
        let old = match self.locals.get_mut(&id) {
            Some(state) => std::mem::replace(&mut state.rendered, rendered),
            None => Rendered::default(),
        };
        for (name, _) in &old.chains {
            self.unref_chain(name);
        }
        match local.kind {
            EndpointKind::Workload => {
                self.dirty_ifaces.insert(local.interface.clone());
            }
            EndpointKind::Host => {
                if let Some(state) = self.locals.get(&id) {
                    let rendered = &state.rendered;
                    for (ingress, rules) in [(true, &rendered.ingress), (false, &rendered.egress)] {
                        let name = host_chain_name(&local.name, PolicyClass::Normal, ingress);
                        self.seq.put_chain(&name, regular(rules));
                    }
                    for (name, rules) in &rendered.phases {
                        self.seq.put_chain(name, regular(rules));
                    }
                }
            }
        }
    }

    /// Local endpoint `id`'s tiers of one class and direction, with the policy chains they
    /// jump to recorded in `rendered`.
    fn tier_chains(
        &self,
        id: ItemId,
        class: PolicyClass,
        ingress: bool,
        rendered: &mut Rendered,
    ) -> Vec<TierChains<'_>> {
        self.rules
            .tier_lists(id, class, ingress)
            .into_iter()
            .map(|list| {
                for (key, policy) in &list.policies {
                    let name = policy_chain_name(&policy.id, class, ingress);
                    let source = ChainSource::Policy((*key).clone(), class, ingress);
                    rendered.chains.push((name, source));
                }
                let policies = list.policies.iter().map(|(_, p)| *p);
                TierChains::of(list.tier, policies, class, ingress)
            })
            .collect()
    }

    fn ref_chain(&mut self, name: &str, source: &ChainSource) {
        let state = self
            .chains
            .entry(name.to_string())
            .or_insert_with(|| ChainState {
                refs: 0,
                source: source.clone(),
                sets: Vec::new(),
            });
        state.refs += 1;
        if state.refs == 1 {
            state.source = source.clone();
            self.dirty_chains.insert(name.to_string());
        }
    }

    fn unref_chain(&mut self, name: &str) {
        if let Some(state) = self.chains.get_mut(name) {
            state.refs -= 1;
            if state.refs == 0 {
                self.dirty_chains.insert(name.to_string());
            }
        }
    }

    fn flush_chains(&mut self) {
        for name in std::mem::take(&mut self.dirty_chains) {
            let Some(state) = self.chains.get(&name) else {
                continue;
            };
            if state.refs == 0 {
                if let Some(state) = self.chains.remove(&name) {
                    for set in &state.sets {
                        self.unref_set(set);
                    }
                }
                self.seq.remove_chain(&name);
                continue;
            }
            let mut requests = SetRequests::new();
            let chain = match &state.source {
                ChainSource::Policy(key, class, ingress) => match self.rules.policy(key) {
                    Some(p) => {
                        let tagging = self.config.render.tagging;
                        policy_chain(p, *class, *ingress, tagging, &mut requests)
                    }
                    None => {
                        debug_assert!(false, "BUG: chain {name} of a policy that is gone");
                        regular(&[])
                    }
                },
                ChainSource::Profile(profile, ingress) => match self.inherit.profile(profile) {
                    Some(p) => {
                        profile_chain(&p, *ingress, self.config.render.tagging, &mut requests)
                    }
                    None => {
                        debug_assert!(false, "BUG: chain {name} of a profile that is gone");
                        regular(&[])
                    }
                },
                ChainSource::Class(rules) => regular(rules),
            };
            let new_sets: Vec<String> = requests.keys().cloned().collect();
            for (set, request) in requests {
                self.ref_set(set, request);
            }
            let old_sets = match self.chains.get_mut(&name) {
                Some(state) => std::mem::replace(&mut state.sets, new_sets),
                None => Vec::new(),
            };
            for set in &old_sets {
                self.unref_set(set);
            }
            self.seq.put_chain(&name, chain);
        }
    }

    fn ref_set(&mut self, name: String, request: SetRequest) {
        if let Some(state) = self.sets.get_mut(&name) {
            state.refs += 1;
            return;
        }
        let source = acquire(&mut self.ipsets, &self.items, &request);
        self.source_sets
            .entry(source)
            .or_default()
            .insert(name.clone());
        self.new_sets.insert(name.clone());
        self.sets.insert(
            name,
            SetState {
                refs: 1,
                request,
                source,
            },
        );
    }

    fn unref_set(&mut self, name: &str) {
        if let Some(state) = self.sets.get_mut(name) {
            state.refs -= 1;
            if state.refs == 0 {
                self.released_sets.insert(name.to_string());
            }
        }
    }

    fn flush_released_sets(&mut self) {
        for name in std::mem::take(&mut self.released_sets) {
            if self.sets.get(&name).is_none_or(|s| s.refs > 0) {
                continue;
            }
            let Some(state) = self.sets.remove(&name) else {
                continue;
            };
            if let Some(names) = self.source_sets.get_mut(&state.source) {
                names.remove(&name);
                if names.is_empty() {
                    self.source_sets.remove(&state.source);
                }
            }
            self.ipsets.release(state.source);
            self.new_sets.remove(&name);
            self.seq.remove_set(&name);
        }
    }

    /// New sets are written whole; the sets of sources whose members changed are edited
    /// by the members that flipped, or written whole when they cannot be
    /// ([`IpSetIndex::edit`](crate::ipsets::IpSetIndex::edit)).
    fn flush_set_elements(&mut self) {
        let new: BTreeSet<String> = std::mem::take(&mut self.new_sets);
        for name in &new {
            if let Some(state) = self.sets.get(name) {
                let set = self.ipsets.set(state.source, &state.request);
                self.seq.put_set(name, set);
            }
        }
        for (source, flips) in self.ipsets.take_dirty() {
            let Some(names) = self.source_sets.get(&source) else {
                continue;
            };
            for name in names.iter().filter(|n| !new.contains(*n)) {
                let Some(state) = self.sets.get(name) else {
                    continue;
                };
                let edit = self.seq.table().sets.get(name).and_then(|current| {
                    self.ipsets
                        .edit(state.source, &state.request, current, &flips)
                });
                match edit {
                    Some(edit) => self.seq.edit_set(name, edit),
                    None => {
                        let set = self.ipsets.set(state.source, &state.request);
                        self.seq.put_set(name, set);
                    }
                }
            }
        }
    }

    fn flush_dispatch(&mut self) {
        for iface in std::mem::take(&mut self.dirty_ifaces) {
            let names = WorkloadChains::new(&iface);
            // The last owner in local-endpoint order wins, as in `render`.
            let winner = self
                .ifaces
                .get(&iface)
                .and_then(|owners| owners.values().next_back())
                .and_then(|id| self.locals.get(id));
            match winner {
                Some(state) => {
                    let ingress = regular(&state.rendered.ingress);
                    let egress = regular(&state.rendered.egress);
                    self.seq.put_chain(&names.ingress, ingress);
                    self.seq.put_chain(&names.egress, egress);
                    self.seq
                        .put_verdict(WL_FROM, &names.key, Some(names.from_verdict()));
                    self.seq
                        .put_verdict(WL_TO, &names.key, Some(names.to_verdict()));
                }
                None => {
                    self.seq.remove_chain(&names.ingress);
                    self.seq.remove_chain(&names.egress);
                    self.seq.put_verdict(WL_FROM, &names.key, None);
                    self.seq.put_verdict(WL_TO, &names.key, None);
                }
            }
        }
        if std::mem::take(&mut self.hosts_dirty) {
            let hosts = local_hosts(&self.hosts, &self.locals);
            let render = &self.config.render;
            for (name, chain) in dispatch_chains(render, !hosts.is_empty()) {
                self.seq.put_chain(&name, chain);
            }
            if render.host_defaults.endpoint_to_host.admits() {
                self.seq.remove_chain(WL_TO_HOST);
            }
            if hosts.is_empty() {
                for name in HOST_BASE_CHAINS {
                    self.seq.remove_chain(name);
                }
                self.placement.clear();
            } else {
                let dispatch = resolve_host_endpoints(&hosts, render);
                for (name, chain) in host_base_chains(&dispatch, render) {
                    self.seq.put_chain(&name, chain);
                }
                self.placement = dispatch.placement();
            }
        }
    }
}

/// A source for `request`, acquired from `ipsets` (its first use scans `items`).
fn acquire(
    ipsets: &mut IpSetIndex,
    items: &HashMap<ItemId, Item>,
    request: &SetRequest,
) -> SourceId {
    ipsets.acquire(&request.source, |id| items.get(&id).and_then(Item::view))
}

fn regular(rules: &[String]) -> Chain {
    Chain {
        hook: None,
        rules: rules.to_vec(),
    }
}
