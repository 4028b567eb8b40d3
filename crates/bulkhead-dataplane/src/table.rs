//! The intended content of Bulkhead's nftables table, and the scripts that load it.
//!
//! [`Table`] is plain data: named sets, verdict maps and chains with their rules as nft
//! text. [`Table::load_script`] replaces the whole table in one transaction; [`diff`]
//! computes the smallest transaction that turns one table into another. Both are applied
//! with `nft -f -`, which the kernel commits all-or-nothing.
//!
//! The order inside a diff transaction is [`TableDiff`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::diff::TableDiff;

/// The table's family and name.
pub const TABLE: &str = "inet bulkhead";

/// The key type of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetKind {
    /// IPv4 prefixes (interval set; a lookup is a search).
    Ipv4,
    /// IPv6 prefixes (interval set; a lookup is a search).
    Ipv6,
    /// IPv4 addresses only (hash set; a lookup is one hash probe).
    Ipv4Hosts,
    /// IPv6 addresses only (hash set; a lookup is one hash probe).
    Ipv6Hosts,
    /// IPv4 address . protocol . port.
    Ipv4Port,
    /// IPv6 address . protocol . port.
    Ipv6Port,
    /// Interface names.
    Ifname,
}

impl SetKind {
    fn declaration(self) -> &'static str {
        match self {
            SetKind::Ipv4 => "type ipv4_addr; flags interval;",
            SetKind::Ipv6 => "type ipv6_addr; flags interval;",
            SetKind::Ipv4Hosts => "type ipv4_addr;",
            SetKind::Ipv6Hosts => "type ipv6_addr;",
            SetKind::Ipv4Port => "type ipv4_addr . inet_proto . inet_service;",
            SetKind::Ipv6Port => "type ipv6_addr . inet_proto . inet_service;",
            SetKind::Ifname => "type ifname;",
        }
    }
}

/// A named set and its elements (as nft text, e.g. `10.65.0.0/24`, `"bh1a2b"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    /// Key type.
    pub kind: SetKind,
    /// Elements. Interval sets hold non-overlapping prefixes only; host sets hold bare
    /// addresses.
    pub elements: BTreeSet<String>,
}

/// A verdict map from interface name to a verdict (`jump chain`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictMap {
    /// `"ifname"` → `jump chain`.
    pub elements: BTreeMap<String, String>,
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hook {
    /// Forwarded traffic.
    Forward,
    /// Traffic to this namespace.
    Input,
    /// Traffic to this namespace, before [`Hook::Input`]: a second base chain on the
    /// input hook, for traffic from local workloads.
    WorkloadInput,
    /// Traffic from this namespace.
    Output,
    /// Every arriving packet, before connection tracking (untracked policies).
    RawPrerouting,
    /// Traffic from this namespace, before connection tracking (untracked policies).
    RawOutput,
    /// Every arriving packet, after connection tracking and before DNAT (pre-DNAT
    /// policies).
    ManglePrerouting,
}

impl Hook {
    /// nft's hook name and priority keyword.
    fn spec(self) -> (&'static str, &'static str) {
        match self {
            Hook::Forward => ("forward", "filter"),
            Hook::Input => ("input", "filter"),
            Hook::WorkloadInput => ("input", "filter - 10"),
            Hook::Output => ("output", "filter"),
            Hook::RawPrerouting => ("prerouting", "raw"),
            Hook::RawOutput => ("output", "raw"),
            Hook::ManglePrerouting => ("prerouting", "mangle"),
        }
    }
}

/// A chain: a base chain (with a hook) or a regular one, and its rules in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The hook, for base chains.
    pub hook: Option<Hook>,
    /// Rules as nft text.
    pub rules: Vec<String>,
}

/// Everything Bulkhead puts in its table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// Named sets.
    pub sets: BTreeMap<String, Set>,
    /// Verdict maps.
    pub maps: BTreeMap<String, VerdictMap>,
    /// Chains.
    pub chains: BTreeMap<String, Chain>,
}

impl Table {
    /// A script that replaces whatever table exists with this one, atomically.
    pub fn load_script(&self) -> String {
        let mut s = format!("add table {TABLE}\ndelete table {TABLE}\nadd table {TABLE}\n");
        for (name, set) in &self.sets {
            add_set(&mut s, name, set);
        }
        for name in self.maps.keys() {
            add_map(&mut s, name);
        }
        for (name, chain) in &self.chains {
            add_chain(&mut s, name, chain);
        }
        for (name, chain) in &self.chains {
            fill_chain(&mut s, name, chain);
        }
        for (name, map) in &self.maps {
            add_map_elements(&mut s, name, map.elements.iter());
        }
        s
    }

    /// Number of rules in every chain.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }

    /// Number of elements in every set and map.
    pub fn element_count(&self) -> usize {
        self.sets.values().map(|s| s.elements.len()).sum::<usize>()
            + self.maps.values().map(|m| m.elements.len()).sum::<usize>()
    }
}

/// What a diff changes, for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// Set elements added or removed.
    pub elements: usize,
    /// Chains added, rewritten or deleted.
    pub chains: usize,
    /// Sets and maps added or deleted.
    pub sets: usize,
}

impl DiffStats {
    /// True when only set or map elements change (the frequent case).
    pub fn elements_only(&self) -> bool {
        self.chains == 0 && self.sets == 0
    }
}

/// The transaction that turns `old` into `new`; `None` if they are equal (see
/// [`TableDiff`] for its order).
pub fn diff(old: &Table, new: &Table) -> Option<(String, DiffStats)> {
    let d = TableDiff::between(old, new);
    (!d.is_empty()).then(|| (d.script(), d.stats()))
}

pub(crate) fn add_set(s: &mut String, name: &str, set: &Set) {
    let _ = writeln!(s, "add set {TABLE} {name} {{ {} }}", set.kind.declaration());
    if !set.elements.is_empty() {
        let elements: Vec<&String> = set.elements.iter().collect();
        let _ = writeln!(s, "add element {TABLE} {name} {{ {} }}", join(&elements));
    }
}

pub(crate) fn add_map(s: &mut String, name: &str) {
    let _ = writeln!(s, "add map {TABLE} {name} {{ type ifname : verdict; }}");
}

pub(crate) fn add_map_elements<'a>(
    s: &mut String,
    name: &str,
    elements: impl Iterator<Item = (&'a String, &'a String)>,
) {
    let items: Vec<String> = elements.map(|(k, v)| format!("{k} : {v}")).collect();
    if !items.is_empty() {
        let _ = writeln!(s, "add element {TABLE} {name} {{ {} }}", items.join(", "));
    }
}

pub(crate) fn add_chain(s: &mut String, name: &str, chain: &Chain) {
    match chain.hook {
        Some(hook) => {
            let (hook, priority) = hook.spec();
            let _ = writeln!(
                s,
                "add chain {TABLE} {name} {{ type filter hook {hook} priority {priority}; policy accept; }}",
            );
        }
        None => {
            let _ = writeln!(s, "add chain {TABLE} {name}");
        }
    }
}

pub(crate) fn fill_chain(s: &mut String, name: &str, chain: &Chain) {
    for rule in &chain.rules {
        let _ = writeln!(s, "add rule {TABLE} {name} {rule}");
    }
}

pub(crate) fn join(items: &[&String]) -> String {
    items
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(elements: &[&str], rules: &[&str]) -> Table {
        let mut t = Table::default();
        t.sets.insert(
            "s4_a".into(),
            Set {
                kind: SetKind::Ipv4,
                elements: elements.iter().map(|e| e.to_string()).collect(),
            },
        );
        t.chains.insert(
            "p.gnp.x.in".into(),
            Chain {
                hook: None,
                rules: rules.iter().map(|r| r.to_string()).collect(),
            },
        );
        t
    }

    #[test]
    fn equal_tables_need_no_transaction() {
        let t = table(&["10.0.0.1"], &["drop"]);
        assert_eq!(diff(&t, &t.clone()), None);
    }

    #[test]
    fn element_changes_touch_only_elements() {
        let (script, stats) = diff(
            &table(&["10.0.0.1", "10.0.0.2"], &["drop"]),
            &table(&["10.0.0.2", "10.0.0.3"], &["drop"]),
        )
        .expect("a change");
        assert_eq!(
            script,
            "delete element inet bulkhead s4_a { 10.0.0.1 }\nadd element inet bulkhead s4_a { 10.0.0.3 }\n"
        );
        assert!(stats.elements_only());
    }

    #[test]
    fn changed_chains_are_flushed_and_refilled_and_removals_come_last() {
        let old = table(&[], &["drop"]);
        let mut new = table(&[], &["accept"]);
        new.chains.remove("p.gnp.x.in");
        new.chains.insert(
            "p.gnp.y.in".into(),
            Chain {
                hook: None,
                rules: vec!["accept".into()],
            },
        );
        let (script, _) = diff(&old, &new).expect("a change");
        let add = script
            .find("add chain inet bulkhead p.gnp.y.in")
            .expect("new chain added");
        let del = script
            .find("delete chain inet bulkhead p.gnp.x.in")
            .expect("old chain deleted");
        assert!(add < del, "{script}");
        assert!(
            script.contains("flush chain inet bulkhead p.gnp.x.in\n"),
            "{script}"
        );
    }

    #[test]
    fn load_script_replaces_the_table() {
        let script = table(&["10.0.0.1"], &["drop"]).load_script();
        assert!(script.starts_with(
            "add table inet bulkhead\ndelete table inet bulkhead\nadd table inet bulkhead\n"
        ));
        assert!(script.contains("add element inet bulkhead s4_a { 10.0.0.1 }"));
        assert!(script.contains("add rule inet bulkhead p.gnp.x.in drop"));
    }
}
