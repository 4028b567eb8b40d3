//! Shared by the calc tests: the from-scratch oracle and a harness that feeds a graph and
//! checks it against the oracle.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};

use bulkhead_api::{Resource, ResourceKey, load_str};
use bulkhead_calc::{CalcGraph, NodeConfig, Update};
use bulkhead_dataplane::render::{HostInterfaces, local_endpoints, render};
use bulkhead_dataplane::{RenderConfig, Table, TableDiff, Tagging};
use bulkhead_engine::Cluster;
use bulkhead_engine::incremental::required_tier;
use bulkhead_engine::model::well_known_tiers;

/// The node the tests calculate for.
pub const NODE: &str = "node-a";

/// The graph's configuration in every test.
pub fn config() -> NodeConfig {
    NodeConfig {
        node: NODE.into(),
        render: RenderConfig {
            workload_prefix: "bh".into(),
            tagging: Tagging::On,
            ..RenderConfig::default()
        },
    }
}

/// Parses one resource (YAML or JSON), validated and defaulted like real input.
pub fn resource(text: &str) -> Resource {
    match load_str("test", text) {
        Ok(mut loaded) if loaded.len() == 1 => loaded.remove(0).resource,
        Ok(loaded) => panic!("expected one resource, got {}", loaded.len()),
        Err(e) => panic!("invalid test resource: {e}\n{text}"),
    }
}

/// The resources the model accepts as they are: the store minus policies whose tier does
/// not exist (the graph parks those; the model would refuse the whole cluster).
pub fn usable(store: &BTreeMap<ResourceKey, Resource>) -> Vec<&Resource> {
    let tiers: HashSet<String> = well_known_tiers()
        .into_iter()
        .map(|t| t.name.to_string())
        .chain(store.values().filter_map(|r| match r {
            Resource::Tier(t) => Some(t.metadata.name.clone()),
            _ => None,
        }))
        .collect();
    store
        .values()
        .filter(|r| required_tier(r).is_none_or(|t| tiers.contains(t)))
        .collect()
}

/// The from-scratch table for `store` on [`NODE`], whose interfaces hold `interfaces`.
pub fn oracle(store: &BTreeMap<ResourceKey, Resource>, interfaces: &HostInterfaces) -> Table {
    let resources = usable(store);
    let cluster = Cluster::build(resources.iter().copied())
        .unwrap_or_else(|e| panic!("the model refuses the test's resources: {e}"));
    let mut config = config();
    config.render.host_interfaces = interfaces.clone();
    config.render.host_defaults = cluster.host_defaults(Some(NODE)).clone();
    let local = local_endpoints(
        resources.iter().copied(),
        NODE,
        &config.render.workload_prefix,
    );
    render(&cluster, &local, &config.render)
}

/// A graph, the store it should reflect, and the table replayed from its deltas.
pub struct Harness {
    pub graph: CalcGraph,
    pub store: BTreeMap<ResourceKey, Resource>,
    /// The node's interfaces, as last given to the graph.
    pub interfaces: HostInterfaces,
    pub replayed: Table,
    pub flushes: usize,
}

impl Default for Harness {
    fn default() -> Self {
        Harness {
            graph: CalcGraph::new(config()),
            store: BTreeMap::new(),
            interfaces: HostInterfaces::new(),
            replayed: Table::default(),
            flushes: 0,
        }
    }
}

impl Harness {
    /// Applies one update to the graph and the store (no flush).
    pub fn apply(&mut self, update: Update) {
        match &update {
            Update::Upsert(r) => {
                self.store.insert(r.key(), r.clone());
            }
            Update::Delete(k) => {
                self.store.remove(k);
            }
        }
        self.graph.apply(update);
    }

    /// The node's interfaces now hold `interfaces` (no flush).
    pub fn set_interfaces(&mut self, interfaces: HostInterfaces) {
        self.interfaces = interfaces.clone();
        self.graph.set_host_interfaces(interfaces);
    }

    pub fn upsert(&mut self, r: Resource) {
        self.apply(Update::Upsert(r));
    }

    pub fn delete(&mut self, k: &ResourceKey) {
        self.apply(Update::Delete(k.clone()));
    }

    /// Flushes and checks: the table equals the oracle's, the delta replays to it, and
    /// the delta is empty exactly when nothing changed. Returns the oracle's table.
    pub fn check(&mut self, context: &str) -> Table {
        let before = self.graph.table().clone();
        let delta = self.graph.flush();
        self.flushes += 1;
        let want = oracle(&self.store, &self.interfaces);
        let got = self.graph.table();
        if *got != want {
            panic!(
                "{context}: incremental table differs from the from-scratch one\n{}",
                table_diff(&want, got)
            );
        }
        if self.flushes > 1 {
            assert_eq!(
                delta.is_empty(),
                before == *got,
                "{context}: delta emptiness must match table change: {delta:?}"
            );
        }
        // From the table of the last flush (as a dataplane holds it), a diff limited to
        // what the delta touched is the whole diff.
        let within = TableDiff::within(&self.replayed, got, &delta.touched());
        let whole = TableDiff::between(&self.replayed, got);
        assert_eq!(
            within.script(),
            whole.script(),
            "{context}: the diff within the delta's objects"
        );
        delta.apply_to(&mut self.replayed);
        assert_eq!(&self.replayed, got, "{context}: replaying the deltas");
        let config = config();
        let resources = usable(&self.store);
        assert_eq!(
            self.graph.local_endpoints(),
            local_endpoints(
                resources.iter().copied(),
                NODE,
                &config.render.workload_prefix
            ),
            "{context}: local endpoints"
        );
        want
    }
}

/// A readable difference between two tables.
pub fn table_diff(want: &Table, got: &Table) -> String {
    let mut out = String::new();
    for (name, set) in &want.sets {
        match got.sets.get(name) {
            None => out.push_str(&format!("missing set {name}: {:?}\n", set.elements)),
            Some(g) if g != set => out.push_str(&format!(
                "set {name}: want {:?} got {:?}\n",
                set.elements, g.elements
            )),
            _ => {}
        }
    }
    for name in got.sets.keys().filter(|n| !want.sets.contains_key(*n)) {
        out.push_str(&format!("extra set {name}\n"));
    }
    for (name, chain) in &want.chains {
        match got.chains.get(name) {
            None => out.push_str(&format!("missing chain {name}: {:#?}\n", chain.rules)),
            Some(g) if g != chain => out.push_str(&format!(
                "chain {name}: want {:#?} got {:#?}\n",
                chain.rules, g.rules
            )),
            _ => {}
        }
    }
    for name in got.chains.keys().filter(|n| !want.chains.contains_key(*n)) {
        out.push_str(&format!("extra chain {name}\n"));
    }
    if want.maps != got.maps {
        out.push_str(&format!("maps: want {:?} got {:?}\n", want.maps, got.maps));
    }
    out
}
