//! Change → enforced: the time from a changed resource set to the committed nft
//! transaction, as the agent does it (compute the node's table, diff, apply), for policy
//! changes and for one endpoint's label change. The baselines in the same run are a full
//! table reload of the same state (what a naive agent would do), a recomputation from
//! scratch, and, for each policy change, the diff as a walk of the whole table beside
//! the diff within the objects the calc graph's delta names (what the agent does).
//!
//! The node has `local` workload endpoints (interface names only: nft needs no real
//! interface for a dispatch map entry), the cluster `remote` endpoints and `policies`
//! policies over 1,000 applications.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bulkhead_api::Resource;
use bulkhead_calc::{CalcGraph, NodeConfig, Update};
use bulkhead_dataplane::{
    CommandRunner, Dataplane, LocalEndpoint, RenderConfig, Table, TableDiff, Touched, render,
};
use bulkhead_engine::Cluster;
use bulkhead_netns::{Netns, unique_name};

/// Latency figures, sorted samples.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// What was changed.
    pub what: &'static str,
    /// Samples.
    pub samples: Vec<Duration>,
}

impl Latencies {
    /// The `q` quantile (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        let i = ((s.len() as f64 - 1.0) * q).round() as usize;
        s.get(i).copied().unwrap_or_default()
    }
}

/// A workload endpoint; `half` (`a` or `b`) is both its `zone` and its `edge`.
fn wep(name: &str, app: &str, half: &str, node: &str, ip: Ipv4Addr) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: bench, labels: {{app: {app}, zone: {half}, edge: {half}}}}}\nspec: {{node: {node}, interfaceName: bh{name}, ipNetworks: [{ip}/32]}}\n---\n"
    )
}

/// A policy for local application `app0` whose source is every endpoint in zone `a`
/// (half the cluster): the node's largest set, for the wide-set label change.
const WIDE_POLICY: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: wide}\nspec:\n  order: 0\n  selector: app == 'app0'\n  ingress:\n    - {action: Allow, protocol: TCP, source: {selector: zone == 'a'}, destination: {ports: [443]}}\n";

/// The same over `edge == 'a'`, which a network set's prefix also matches: the set is
/// an interval set of aggregated prefixes.
const WIDE_NETS_POLICY: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: wide-nets}\nspec:\n  order: 0\n  selector: app == 'app0'\n  ingress:\n    - {action: Allow, protocol: TCP, source: {selector: edge == 'a'}, destination: {ports: [444]}}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: edge, labels: {edge: a}}\nspec: {nets: [198.18.0.0/24]}\n";

/// Policy `p` of the scenario, allowing `port`.
pub(super) fn policy(p: usize, port: u16) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p{p}}}\nspec:\n  order: {p}\n  selector: app == 'app{}'\n  ingress:\n    - {{action: Allow, protocol: TCP, source: {{selector: app == 'app{}'}}, destination: {{ports: [{port}]}}}}\n---\n",
        p % 1000,
        (p * 7 + 3) % 1000
    )
}

/// The application a label change moves a remote endpoint to (from `current`): the
/// source application of a policy that selects a local endpoint, so that the move always
/// changes a set in the node's table (most applications are in no rendered set).
pub(super) fn moved_app(i: usize, local: usize, current: Option<&String>) -> String {
    let local = local.clamp(1, 1000);
    (0..local)
        .map(|k| format!("app{}", (((i + k) % local) * 7 + 3) % 1000))
        .find(|app| Some(app) != current)
        .unwrap_or_else(|| "app3".into())
}

/// Loads generated YAML.
pub(super) fn load(text: &str) -> anyhow::Result<Vec<Resource>> {
    bulkhead_api::load_str("bench.yaml", text)
        .map(|l| l.into_iter().map(|l| l.resource).collect())
        .map_err(|e| anyhow::anyhow!("the generated scenario does not load: {e}"))
}

/// The scenario's resources: local endpoints first, then remote ones, then policies
/// (policy `p` is at index `local + remote + p`).
pub(super) fn resources(
    local: usize,
    remote: usize,
    policies: usize,
) -> anyhow::Result<Vec<Resource>> {
    load(&scenario(local, remote, policies))
}

/// The scenario as one multi-document YAML text, in the order of [`resources`].
pub(super) fn scenario(local: usize, remote: usize, policies: usize) -> String {
    let mut docs = String::new();
    for i in 0..local {
        let ip = Ipv4Addr::new(10, 65, (i >> 8) as u8, i as u8);
        docs.push_str(&wep(
            &format!("l{i}"),
            &format!("app{}", i % 1000),
            "a",
            "bench",
            ip,
        ));
    }
    for i in 0..remote {
        let n = i as u32;
        let ip = Ipv4Addr::new(10, 100 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
        docs.push_str(&wep(
            &format!("r{i}"),
            &format!("app{}", i % 1000),
            ["a", "b"][i % 2],
            "remote",
            ip,
        ));
    }
    for p in 0..policies {
        docs.push_str(&policy(p, 80));
    }
    docs
}

fn local_endpoints(local: usize) -> Vec<LocalEndpoint> {
    (0..local)
        .map(|i| LocalEndpoint::workload("bench", &format!("l{i}"), &format!("bhl{i}")))
        .collect()
}

/// The agent's computation: the node's table for a resource set.
fn compute(resources: &[Resource], local: &[LocalEndpoint]) -> anyhow::Result<Table> {
    let cluster = Cluster::build(resources)?;
    Ok(render(&cluster, local, &RenderConfig::default()))
}

/// Runs `changes` policy changes and `changes` label changes the agent's way (calc graph,
/// then a diffing apply), and, every tenth change, the same state computed from scratch and
/// a full table reload as baselines.
pub fn run(
    local: usize,
    remote: usize,
    policies: usize,
    changes: usize,
) -> anyhow::Result<[Latencies; 8]> {
    let ns = Netns::create(&unique_name("bench-apply"))?;
    let locals = local_endpoints(local);
    let mut dataplane = Dataplane::new(CommandRunner::in_netns(ns.name()));
    let mut state = resources(local, remote, policies)?;
    state.extend(load(WIDE_POLICY)?);
    state.extend(load(WIDE_NETS_POLICY)?);
    let mut graph = CalcGraph::new(NodeConfig {
        node: "bench".into(),
        render: RenderConfig::default(),
    });
    for r in &state {
        graph.apply(Update::Upsert(r.clone()));
    }
    graph.flush();
    dataplane.apply(graph.table())?;
    let (mut policy_changes, mut label_changes, mut scratch, mut reloads) =
        (vec![], vec![], vec![], vec![]);
    let (mut whole_diffs, mut delta_diffs) = (vec![], vec![]);
    let (mut wide_changes, mut wide_net_changes) = (vec![], vec![]);
    for i in 0..changes {
        // A policy that selects local endpoints changes its port.
        let changed = i % local.clamp(1, 1000);
        if let Some(r) = load(&policy(changed, 1000 + i as u16))?.pop() {
            state[local + remote + changed] = r.clone();
            let start = Instant::now();
            graph.apply(Update::Upsert(r));
            let touched = graph.flush().touched();
            let calculated = start.elapsed();
            // The two ways to diff, timed apart (and left out of the change's time).
            let (whole, within) = diff_both_ways(&dataplane, graph.table(), &touched, i % 10 == 0)?;
            whole_diffs.push(whole);
            delta_diffs.push(within);
            let start = Instant::now();
            dataplane.apply_within(graph.table(), &touched)?;
            policy_changes.push(calculated + start.elapsed());
        }
        // A remote endpoint moves to another application: set memberships change.
        if let Some(Resource::WorkloadEndpoint(w)) = state.get_mut(local + i % remote.max(1)) {
            let app = moved_app(i, local, w.metadata.labels.get("app"));
            w.metadata.labels.insert("app".into(), app);
            let moved = Resource::WorkloadEndpoint(w.clone());
            let start = Instant::now();
            graph.apply(Update::Upsert(moved));
            let touched = graph.flush().touched();
            dataplane.apply_within(graph.table(), &touched)?;
            label_changes.push(start.elapsed());
        }
        // A remote endpoint leaves zone `a` (even changes) and comes back (odd ones): one
        // member less or more in the node's largest set; then the same with its edge.
        for (label, samples) in [("zone", &mut wide_changes), ("edge", &mut wide_net_changes)] {
            let flipped = local + (i / 2 * 2) % remote.max(1);
            if let Some(Resource::WorkloadEndpoint(w)) = state.get_mut(flipped) {
                let half = if i % 2 == 0 { "b" } else { "a" };
                w.metadata.labels.insert(label.into(), half.into());
                let moved = Resource::WorkloadEndpoint(w.clone());
                let start = Instant::now();
                graph.apply(Update::Upsert(moved));
                let touched = graph.flush().touched();
                dataplane.apply_within(graph.table(), &touched)?;
                samples.push(start.elapsed());
            }
        }
        if i % 10 == 0 {
            let start = Instant::now();
            let table = compute(&state, &locals)?;
            scratch.push(start.elapsed());
            if &table != graph.table() {
                anyhow::bail!("the calc graph and the from-scratch render disagree");
            }
            check_big_sets(&ns, graph.table())?;
            dataplane.force_full();
            let start = Instant::now();
            dataplane.apply(table)?;
            reloads.push(start.elapsed());
        }
        eprint!("\r{} / {changes} changes", i + 1);
    }
    eprintln!();
    Ok([
        Latencies {
            what: "policy change -> enforced (calc + diff + nft)",
            samples: policy_changes,
        },
        Latencies {
            what: "one label change -> sets updated (calc + diff + nft)",
            samples: label_changes,
        },
        Latencies {
            what: "one label change -> a set of half the cluster updated (addresses)",
            samples: wide_changes,
        },
        Latencies {
            what: "one label change -> a set of half the cluster updated (prefixes)",
            samples: wide_net_changes,
        },
        Latencies {
            what: "baseline: recompute from scratch (build + render, no kernel)",
            samples: scratch,
        },
        Latencies {
            what: "baseline: full table reload (nft only)",
            samples: reloads,
        },
        Latencies {
            what: "policy change, diff alone: walk of the whole table",
            samples: whole_diffs,
        },
        Latencies {
            what: "policy change, diff alone: within the delta's objects",
            samples: delta_diffs,
        },
    ])
}

/// Checks that the kernel holds the big sets of `table` (the wide policies', of 1,000
/// elements or more) element for element: the label changes timed above really
/// reached it.
fn check_big_sets(ns: &Netns, table: &Table) -> anyhow::Result<()> {
    // nft lists a one-address prefix of an interval set as the bare address.
    let bare = |e: &str| {
        e.trim()
            .trim_end_matches("/32")
            .trim_end_matches("/128")
            .to_string()
    };
    for (name, set) in table.sets.iter().filter(|(_, s)| s.elements.len() >= 1000) {
        let listed = ns.exec_ok("nft", ["list", "set", "inet", "bulkhead", name])?;
        let elements = listed
            .split_once("elements = {")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(inside, _)| inside)
            .unwrap_or_default();
        let kernel: BTreeSet<String> = elements
            .split(',')
            .map(bare)
            .filter(|e| !e.is_empty())
            .collect();
        let intended: BTreeSet<String> = set.elements.iter().map(|e| bare(e)).collect();
        if kernel != intended {
            anyhow::bail!(
                "the kernel's set {name} holds {} elements, the calc graph's {}",
                kernel.len(),
                intended.len()
            );
        }
    }
    Ok(())
}

/// How long the diff from the installed table to `desired` takes as a walk of the whole
/// table and within the objects `touched` names; with `check`, both must agree.
fn diff_both_ways(
    dataplane: &Dataplane<CommandRunner>,
    desired: &Table,
    touched: &Touched,
    check: bool,
) -> anyhow::Result<(Duration, Duration)> {
    let installed = dataplane
        .installed()
        .ok_or_else(|| anyhow::anyhow!("nothing installed to diff against"))?;
    let start = Instant::now();
    let whole = TableDiff::between(installed, desired);
    let whole_time = start.elapsed();
    let start = Instant::now();
    let within = TableDiff::within(installed, desired, touched);
    let within_time = start.elapsed();
    if check && whole.script() != within.script() {
        anyhow::bail!("the diff within the delta's objects differs from the whole diff");
    }
    Ok((whole_time, within_time))
}
