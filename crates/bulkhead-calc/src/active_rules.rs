//! Which enforced policies select which local endpoints, and the per-endpoint tier lists
//! they make (Felix's `ActiveRulesCalculator` and `PolicyResolver` in one node).
//!
//! Policies here are the ones the dataplane enforces: compiled, not staged, of any class
//! (normal, untracked, pre-DNAT: each endpoint's lists are per class), and in a tier that
//! exists.
//! A policy whose tier does not exist is kept *parked*: stored, matched against nothing,
//! and enabled the moment its tier appears (the model refuses such a cluster outright;
//! an agent receiving updates in any order cannot).
//!
//! Matching is done both ways, and only for local endpoints:
//! - a local endpoint that changes is evaluated against the policies a label-restriction
//!   index offers for its labels, not against every policy;
//! - a policy that changes is evaluated against every local endpoint (a node has a few
//!   hundred at most; Felix does the same).
//!
//! Every mutation returns the local endpoints whose tier lists may have changed; the graph
//! recomputes exactly those at flush ([`ActiveRulesCalculator::tier_lists`]).

use std::collections::{HashMap, HashSet};

use bulkhead_api::{LabelMap, ResourceKey};
use bulkhead_dataplane::render::policy_reach;
use bulkhead_engine::Tier;
use bulkhead_engine::compile::{Policy, PolicyClass};
use bulkhead_engine::incremental::{policy_cmp, tier_cmp};
use bulkhead_engine::model::well_known_tiers;

use crate::ItemId;
use crate::selector_index::SelectorIndex;

/// A policy's identity while stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PolicyId(u32);

#[derive(Debug)]
struct Entry {
    key: ResourceKey,
    policy: Policy,
    /// Its tier exists.
    enabled: bool,
    /// The local endpoints it selects (empty while parked).
    matches: HashSet<ItemId>,
}

#[derive(Debug)]
struct Local {
    labels: LabelMap,
    matches: HashSet<PolicyId>,
}

/// One tier of an endpoint's list for one direction.
#[derive(Debug)]
pub(crate) struct TierList<'a> {
    pub(crate) tier: &'a Tier,
    /// Policies in evaluation order, with their resource keys.
    pub(crate) policies: Vec<(&'a ResourceKey, &'a Policy)>,
}

/// Enforced policies, tiers, and their matches against local endpoints.
#[derive(Debug)]
pub(crate) struct ActiveRulesCalculator {
    /// Effective tiers: the well-known ones, overridden or extended by Tier resources.
    tiers: HashMap<String, Tier>,
    well_known: HashMap<String, Tier>,
    entries: HashMap<PolicyId, Entry>,
    ids: HashMap<ResourceKey, PolicyId>,
    next: u32,
    by_tier: HashMap<String, HashSet<PolicyId>>,
    index: SelectorIndex<PolicyId>,
    locals: HashMap<ItemId, Local>,
}

impl Default for ActiveRulesCalculator {
    fn default() -> Self {
        let well_known: HashMap<String, Tier> = well_known_tiers()
            .into_iter()
            .map(|t| (t.name.to_string(), t))
            .collect();
        ActiveRulesCalculator {
            tiers: well_known.clone(),
            well_known,
            entries: HashMap::new(),
            ids: HashMap::new(),
            next: 0,
            by_tier: HashMap::new(),
            index: SelectorIndex::default(),
            locals: HashMap::new(),
        }
    }
}

impl ActiveRulesCalculator {
    /// Sets (`Some`) or removes a Tier resource. Returns the local endpoints to recompute.
    pub(crate) fn set_tier(&mut self, name: &str, tier: Option<Tier>) -> HashSet<ItemId> {
        let effective = tier.or_else(|| self.well_known.get(name).cloned());
        if self.tiers.get(name) == effective.as_ref() {
            return HashSet::new();
        }
        match effective {
            Some(t) => self.tiers.insert(name.to_string(), t),
            None => self.tiers.remove(name),
        };
        let exists = self.tiers.contains_key(name);
        let mut dirty = HashSet::new();
        let ids: Vec<PolicyId> = self
            .by_tier
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for id in ids {
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            // Order or default action changed: every endpoint it selects re-sorts.
            dirty.extend(entry.matches.iter().copied());
            if entry.enabled != exists {
                dirty.extend(self.rematch(id, exists));
            }
        }
        dirty
    }

    /// Adds or replaces the enforced policy `key`. Returns the local endpoints to
    /// recompute (those it selected or selects, if anything but its rules changed).
    pub(crate) fn upsert_policy(&mut self, key: ResourceKey, policy: Policy) -> HashSet<ItemId> {
        let enabled = self.tiers.contains_key(&policy.tier);
        let Some(&id) = self.ids.get(&key) else {
            let id = PolicyId(self.next);
            self.next += 1;
            self.ids.insert(key.clone(), id);
            self.by_tier
                .entry(policy.tier.clone())
                .or_default()
                .insert(id);
            self.entries.insert(
                id,
                Entry {
                    key,
                    policy,
                    enabled: false,
                    matches: HashSet::new(),
                },
            );
            return self.rematch(id, enabled);
        };
        let Some(entry) = self.entries.get_mut(&id) else {
            return HashSet::new();
        };
        let old = std::mem::replace(&mut entry.policy, policy);
        let new = &entry.policy;
        let reselect = old.selector != new.selector || entry.enabled != enabled;
        // Endpoint chains hold the class's tier order and, in their dispatch maps, which
        // ports each policy's rules can match.
        let resort = old.tier != new.tier
            || old.class != new.class
            || old.order.map(f64::to_bits) != new.order.map(f64::to_bits)
            || old.ingress_type != new.ingress_type
            || old.egress_type != new.egress_type
            || [true, false]
                .into_iter()
                .any(|ingress| policy_reach(&old, ingress) != policy_reach(new, ingress));
        if old.tier != new.tier {
            let new_tier = new.tier.clone();
            self.unfile_tier(&old.tier, id);
            self.by_tier.entry(new_tier).or_default().insert(id);
        }
        let mut dirty = HashSet::new();
        if resort && let Some(entry) = self.entries.get(&id) {
            dirty.extend(entry.matches.iter().copied());
        }
        if reselect {
            dirty.extend(self.rematch(id, enabled));
        }
        dirty
    }

    /// Removes policy `key` (no-op if absent). Returns the local endpoints to recompute.
    pub(crate) fn delete_policy(&mut self, key: &ResourceKey) -> HashSet<ItemId> {
        let Some(id) = self.ids.remove(key) else {
            return HashSet::new();
        };
        let dirty = self.rematch(id, false);
        if let Some(entry) = self.entries.remove(&id) {
            self.unfile_tier(&entry.policy.tier, id);
        }
        dirty
    }

    fn unfile_tier(&mut self, tier: &str, id: PolicyId) {
        if let Some(set) = self.by_tier.get_mut(tier) {
            set.remove(&id);
            if set.is_empty() {
                self.by_tier.remove(tier);
            }
        }
    }

    /// Recomputes policy `id`'s matches (none unless `enabled`), refiling its selector.
    /// Returns the endpoints whose match sets changed.
    fn rematch(&mut self, id: PolicyId, enabled: bool) -> HashSet<ItemId> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return HashSet::new();
        };
        entry.enabled = enabled;
        let new: HashSet<ItemId> = if enabled {
            self.index.insert(id, &entry.policy.selector);
            self.locals
                .iter()
                .filter(|(_, l)| entry.policy.selector.matches(&l.labels))
                .map(|(item, _)| *item)
                .collect()
        } else {
            self.index.remove(id);
            HashSet::new()
        };
        let old = std::mem::replace(&mut entry.matches, new);
        let changed: HashSet<ItemId> = old.symmetric_difference(&entry.matches).copied().collect();
        for item in &changed {
            if let Some(local) = self.locals.get_mut(item) {
                if entry.matches.contains(item) {
                    local.matches.insert(id);
                } else {
                    local.matches.remove(&id);
                }
            }
        }
        changed
    }

    /// Adds or updates local endpoint `item` with its flattened labels. True if the
    /// policies selecting it changed (always for a new endpoint).
    pub(crate) fn upsert_local(&mut self, item: ItemId, labels: &LabelMap) -> bool {
        let mut matches = HashSet::new();
        self.index.for_each_candidate(labels, |id| {
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.enabled && e.policy.selector.matches(labels))
            {
                matches.insert(id);
            }
        });
        let old = self.locals.insert(
            item,
            Local {
                labels: labels.clone(),
                matches: matches.clone(),
            },
        );
        let old_matches = old.map(|l| l.matches);
        if old_matches.as_ref() == Some(&matches) {
            return false;
        }
        let old_matches = old_matches.unwrap_or_default();
        for id in old_matches.difference(&matches) {
            if let Some(e) = self.entries.get_mut(id) {
                e.matches.remove(&item);
            }
        }
        for id in matches.difference(&old_matches) {
            if let Some(e) = self.entries.get_mut(id) {
                e.matches.insert(item);
            }
        }
        true
    }

    /// Forgets local endpoint `item`.
    pub(crate) fn remove_local(&mut self, item: ItemId) {
        if let Some(local) = self.locals.remove(&item) {
            for id in local.matches {
                if let Some(e) = self.entries.get_mut(&id) {
                    e.matches.remove(&item);
                }
            }
        }
    }

    /// The enforced policy `key`, if stored.
    pub(crate) fn policy(&self, key: &ResourceKey) -> Option<&Policy> {
        self.ids
            .get(key)
            .and_then(|id| self.entries.get(id))
            .map(|e| &e.policy)
    }

    /// Policies whose tier does not exist, with that tier.
    pub(crate) fn parked(&self) -> impl Iterator<Item = (&ResourceKey, &str)> {
        self.entries
            .values()
            .filter(|e| !e.enabled)
            .map(|e| (&e.key, e.policy.tier.as_str()))
    }

    /// Local endpoint `item`'s tiers for one class and direction, in evaluation order:
    /// tiers by order then name, each with its policies of the class that select the
    /// endpoint and govern the direction, by order, name, namespace and kind. Tiers
    /// without such a policy are left out.
    pub(crate) fn tier_lists(
        &self,
        item: ItemId,
        class: PolicyClass,
        ingress: bool,
    ) -> Vec<TierList<'_>> {
        let Some(local) = self.locals.get(&item) else {
            return Vec::new();
        };
        let mut chosen: Vec<(&Tier, &Entry)> = local
            .matches
            .iter()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| e.policy.applies_in(class))
            .filter(|e| {
                if ingress {
                    e.policy.ingress_type
                } else {
                    e.policy.egress_type
                }
            })
            .filter_map(|e| self.tiers.get(&e.policy.tier).map(|t| (t, e)))
            .collect();
        chosen.sort_by(|(ta, a), (tb, b)| {
            tier_cmp(ta, tb).then_with(|| policy_cmp(&a.policy, &b.policy))
        });
        let mut out: Vec<TierList<'_>> = Vec::new();
        for (tier, e) in chosen {
            match out.last_mut() {
                Some(list) if list.tier.name == tier.name => {
                    list.policies.push((&e.key, &e.policy))
                }
                _ => out.push(TierList {
                    tier,
                    policies: vec![(&e.key, &e.policy)],
                }),
            }
        }
        out
    }

    /// Number of stored policies (parked ones included).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::values::TierDefaultAction;
    use bulkhead_api::{Kind, load_str};
    use bulkhead_engine::incremental::policy;

    fn gnp(name: &str, tier: &str, order: f64, selector: &str) -> (ResourceKey, Policy) {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec: {{tier: {tier}, order: {order}, selector: \"{selector}\", types: [Ingress]}}\n"
        );
        let r = load_str("t", &text).expect("loads").remove(0).resource;
        let p = policy(&r).expect("compiles").expect("policy");
        (r.key(), p)
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(arc: &ActiveRulesCalculator, item: ItemId) -> Vec<(String, Vec<String>)> {
        arc.tier_lists(item, PolicyClass::Normal, true)
            .iter()
            .map(|t| {
                (
                    t.tier.name.to_string(),
                    t.policies.iter().map(|(k, _)| k.name.clone()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn parked_policies_wake_with_their_tier_and_lists_sort() {
        let mut arc = ActiveRulesCalculator::default();
        let ep = ItemId(1);
        assert!(arc.upsert_local(ep, &labels(&[("app", "a")])));
        let (k1, p1) = gnp("b", "default", 10.0, "app == 'a'");
        let (k2, p2) = gnp("a", "default", 10.0, "has(app)");
        let (k3, p3) = gnp("c", "sec", 1.0, "all()");
        assert_eq!(arc.upsert_policy(k1, p1), HashSet::from([ep]));
        arc.upsert_policy(k2, p2);
        assert!(arc.upsert_policy(k3.clone(), p3).is_empty());
        assert_eq!(arc.parked().count(), 1);
        let dirty = arc.set_tier(
            "sec",
            Some(Tier {
                name: "sec".into(),
                order: Some(5.0),
                default_action: TierDefaultAction::Pass,
            }),
        );
        assert_eq!(dirty, HashSet::from([ep]));
        assert_eq!(
            names(&arc, ep),
            vec![
                ("sec".to_string(), vec!["c".to_string()]),
                (
                    "default".to_string(),
                    vec!["a".to_string(), "b".to_string()]
                ),
            ]
        );
        assert_eq!(arc.delete_policy(&k3), HashSet::from([ep]));
        assert!(arc.upsert_local(ep, &labels(&[("x", "y")])));
        assert!(names(&arc, ep).is_empty());
        assert_eq!(arc.len(), 2);
        assert!(k3.kind == Kind::GlobalNetworkPolicy);
    }
}
