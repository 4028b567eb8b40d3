//! IP set membership over every endpoint and network set of the cluster, for the sets
//! the node's rules use (Felix's `SelectorAndNamedPortIndex`).
//!
//! A *source* is what a set holds whatever its family ([`SetSource`]): a selector's
//! addresses, or a named port's `(address, port)` pairs. The table's `s4_`/`s6_` (or
//! `n4_`/`n6_`) sets of one source share it. A source exists only while some rendered
//! rule uses it ([`IpSetIndex::acquire`] / [`IpSetIndex::release`], reference counted).
//!
//! Members are reference counted, because two endpoints can share an address, one
//! endpoint can list an address twice, and network sets overlap: a member leaves a set
//! only when its last contributor does. A source is marked dirty only when a member key
//! appears or disappears (0↔1), and remembers which keys did ([`Flips`]). At a flush,
//! [`IpSetIndex::edit`] turns those into element changes of the source's sets, at a cost
//! that follows the flips, not the set. An interval set, whose elements are aggregated
//! prefixes, is built again from the member keys instead ([`IpSetIndex::set`]), exactly
//! as the from-scratch renderer does, so overlapping CIDRs always come out the same.
//!
//! Work per change is sub-linear:
//! - an item (endpoint or network set) that changes is evaluated only against the
//!   sources filed under its labels in a label-restriction index (every source with a
//!   selector, named ports included), and against the selector-less named-port sources
//!   filed under its port names;
//! - a source that becomes active is evaluated only against the items a label index
//!   offers for its selector's restrictions (or, for a named port without a selector, the
//!   endpoints with a port of that name).
//!
//! Each item remembers which sources it contributes to, so removing or changing it never
//! rescans; each source remembers its contributors, so releasing it never rescans either.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use bulkhead_api::LabelMap;
use bulkhead_dataplane::rules::{
    Family, SetEdit, SetRequest, SetSource, named_port_set, named_port_set_edit, selector_set,
    selector_set_edit,
};
use bulkhead_dataplane::table::Set;
use bulkhead_engine::endpoint::NamedPort;
use ipnet::IpNet;

use crate::ItemId;
use crate::aggregate::Aggregate;
use crate::label_index::LabelIndex;
use crate::selector_index::SelectorIndex;

/// An IP set source's identity while it is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SourceId(u32);

/// What an item offers to IP sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemView<'a> {
    /// Flattened labels.
    pub(crate) labels: &'a LabelMap,
    /// Addresses as host prefixes (endpoints) or truncated CIDRs (network sets).
    pub(crate) nets: Vec<IpNet>,
    /// Endpoint addresses (named-port members).
    pub(crate) ips: &'a [IpAddr],
    /// Endpoint named ports.
    pub(crate) ports: &'a [NamedPort],
}

#[derive(Debug)]
enum Members {
    /// A selector's prefixes, their union's maximal prefixes, and how many real
    /// prefixes (not single addresses) are members, per family (IPv4, IPv6).
    Nets {
        counts: BTreeMap<IpNet, u32>,
        aggregate: Aggregate,
        prefixes: [u32; 2],
    },
    Ports(BTreeMap<(IpAddr, u16), u32>),
}

/// A source's member keys that appeared or disappeared since the last flush (some of
/// them perhaps both: whether each is a member now is read from the members).
#[derive(Debug, Default)]
pub(crate) struct Flips {
    nets: HashSet<IpNet>,
    /// Pieces of the selector members' union ([`Aggregate`]).
    pieces: HashSet<IpNet>,
    ports: HashSet<(IpAddr, u16)>,
}

#[derive(Debug)]
struct Source {
    spec: SetSource,
    users: usize,
    members: Members,
    contributors: HashSet<ItemId>,
    flips: Flips,
    /// Being filled by [`IpSetIndex::acquire`]: member changes are not flips (every set
    /// of a new source is written whole), and the aggregate is computed once at the end.
    activating: bool,
}

/// Active IP set sources and their reference-counted members.
#[derive(Debug, Default)]
pub(crate) struct IpSetIndex {
    sources: HashMap<SourceId, Source>,
    ids: HashMap<SetSource, SourceId>,
    next: u32,
    /// Sources with a selector (selector sets, named ports with one), by label
    /// restriction.
    selectors: SelectorIndex<SourceId>,
    /// Named-port sources without a selector, by each of their port names.
    port_sources: HashMap<String, HashSet<SourceId>>,
    /// Items by label (for activation scans).
    item_labels: LabelIndex<ItemId>,
    /// Endpoints by port name (for activation scans).
    item_ports: HashMap<String, HashSet<ItemId>>,
    /// The sources each item contributes to.
    item_sources: HashMap<ItemId, Vec<SourceId>>,
    dirty: BTreeSet<SourceId>,
}

impl IpSetIndex {
    /// One more table set uses `spec`: activates it (scanning the candidate items, read
    /// through `view`) on first use. Returns its id.
    pub(crate) fn acquire<'a>(
        &mut self,
        spec: &SetSource,
        view: impl Fn(ItemId) -> Option<ItemView<'a>>,
    ) -> SourceId {
        if let Some(&id) = self.ids.get(spec) {
            if let Some(s) = self.sources.get_mut(&id) {
                s.users += 1;
            }
            return id;
        }
        let id = SourceId(self.next);
        self.next += 1;
        let members = match spec {
            SetSource::Selector(_) => Members::Nets {
                counts: BTreeMap::new(),
                aggregate: Aggregate::default(),
                prefixes: [0; 2],
            },
            SetSource::NamedPort { .. } => Members::Ports(BTreeMap::new()),
        };
        // A source with a selector is filed, and its candidates found, by the selector's
        // label restrictions; a named port without one, by its port names.
        let candidates: Vec<ItemId> = match spec {
            SetSource::Selector(sel)
            | SetSource::NamedPort {
                selector: Some(sel),
                ..
            } => {
                self.selectors.insert(id, sel);
                self.item_labels.candidates(sel)
            }
            SetSource::NamedPort {
                selector: None,
                names,
                ..
            } => {
                for n in names {
                    self.port_sources.entry(n.clone()).or_default().insert(id);
                }
                let mut c: Vec<ItemId> = names
                    .iter()
                    .filter_map(|n| self.item_ports.get(n))
                    .flatten()
                    .copied()
                    .collect();
                c.sort_unstable();
                c.dedup();
                c
            }
        };
        let mut source = Source {
            spec: spec.clone(),
            users: 1,
            members,
            contributors: HashSet::new(),
            flips: Flips::default(),
            activating: true,
        };
        for item in candidates {
            let Some(v) = view(item) else { continue };
            if source.spec_matches(&v) {
                source.add(&v, 1);
                source.contributors.insert(item);
                self.item_sources.entry(item).or_default().push(id);
            }
        }
        // The union of all the members at once, rather than member by member; every set
        // of a new source is written whole, so nothing flipped.
        if let Members::Nets {
            counts, aggregate, ..
        } = &mut source.members
        {
            *aggregate = Aggregate::of(counts.keys().copied());
        }
        source.activating = false;
        self.sources.insert(id, source);
        self.ids.insert(spec.clone(), id);
        self.dirty.insert(id);
        id
    }

    /// One table set fewer uses source `id`: forgets it after its last user.
    pub(crate) fn release(&mut self, id: SourceId) {
        let Some(source) = self.sources.get_mut(&id) else {
            return;
        };
        source.users -= 1;
        if source.users > 0 {
            return;
        }
        let Some(source) = self.sources.remove(&id) else {
            return;
        };
        self.ids.remove(&source.spec);
        self.dirty.remove(&id);
        match &source.spec {
            SetSource::Selector(_)
            | SetSource::NamedPort {
                selector: Some(_), ..
            } => self.selectors.remove(id),
            SetSource::NamedPort {
                selector: None,
                names,
                ..
            } => {
                for n in names {
                    if let Some(set) = self.port_sources.get_mut(n) {
                        set.remove(&id);
                        if set.is_empty() {
                            self.port_sources.remove(n);
                        }
                    }
                }
            }
        }
        for item in source.contributors {
            if let Some(list) = self.item_sources.get_mut(&item) {
                list.retain(|s| *s != id);
                if list.is_empty() {
                    self.item_sources.remove(&item);
                }
            }
        }
    }

    /// Item `id` changed from `old` to `new` (`None`: absent). Adjusts the members of the
    /// sources it contributed to and now contributes to; marks a source dirty only when a
    /// member appears or disappears.
    pub(crate) fn update_item(
        &mut self,
        id: ItemId,
        old: Option<&ItemView<'_>>,
        new: Option<&ItemView<'_>>,
    ) {
        if old == new {
            return;
        }
        // Re-index the item for activation scans.
        if let Some(o) = old {
            self.item_labels.remove(id, o.labels);
            for p in o.ports {
                if let Some(set) = self.item_ports.get_mut(&p.name) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.item_ports.remove(&p.name);
                    }
                }
            }
        }
        if let Some(n) = new {
            self.item_labels.insert(id, n.labels);
            for p in n.ports {
                self.item_ports
                    .entry(p.name.clone())
                    .or_default()
                    .insert(id);
            }
        }
        let before = self.item_sources.remove(&id).unwrap_or_default();
        let after = match new {
            Some(n) if old.is_some_and(|o| o.labels == n.labels && o.ports == n.ports) => {
                before.clone()
            }
            Some(n) => self.matching_sources(n),
            None => Vec::new(),
        };
        // Add the new contribution before removing the old one, so that a member the item
        // keeps never drops to zero on the way.
        if let Some(n) = new {
            for s in &after {
                if let Some(source) = self.sources.get_mut(s) {
                    if source.add(n, 1) {
                        self.dirty.insert(*s);
                    }
                    source.contributors.insert(id);
                }
            }
        }
        if let Some(o) = old {
            for s in &before {
                if let Some(source) = self.sources.get_mut(s) {
                    if source.add(o, -1) {
                        self.dirty.insert(*s);
                    }
                    if !after.contains(s) {
                        source.contributors.remove(&id);
                    }
                }
            }
        }
        if !after.is_empty() {
            self.item_sources.insert(id, after);
        }
    }

    /// The active sources `item` contributes to.
    fn matching_sources(&self, item: &ItemView<'_>) -> Vec<SourceId> {
        let mut out = Vec::new();
        self.selectors.for_each_candidate(item.labels, |s| {
            if self
                .sources
                .get(&s)
                .is_some_and(|src| src.spec_matches(item))
            {
                out.push(s);
            }
        });
        let mut named: Vec<SourceId> = item
            .ports
            .iter()
            .filter_map(|p| self.port_sources.get(&p.name))
            .flatten()
            .copied()
            .collect();
        named.sort_unstable();
        named.dedup();
        out.extend(named.into_iter().filter(|s| {
            self.sources
                .get(s)
                .is_some_and(|src| src.spec_matches(item))
        }));
        out
    }

    /// Takes the sources whose member keys changed since the last call, with the keys
    /// that did.
    pub(crate) fn take_dirty(&mut self) -> Vec<(SourceId, Flips)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| {
                let source = self.sources.get_mut(&id)?;
                Some((id, std::mem::take(&mut source.flips)))
            })
            .collect()
    }

    /// The element changes that bring `current`, source `id`'s set for `request`, up to
    /// date after `flips`; `None` when the set must be built again ([`IpSetIndex::set`]).
    pub(crate) fn edit(
        &self,
        id: SourceId,
        request: &SetRequest,
        current: &Set,
        flips: &Flips,
    ) -> Option<SetEdit> {
        let family = request.family;
        match (&self.sources.get(&id)?.members, &request.source) {
            (
                Members::Nets {
                    counts,
                    aggregate,
                    prefixes,
                },
                SetSource::Selector(_),
            ) => selector_set_edit(
                family,
                current,
                flips.nets.iter().map(|n| (n, counts.contains_key(n))),
                flips
                    .pieces
                    .iter()
                    .map(|p| (p, aggregate.pieces().contains(p))),
                prefixes[slot(family)] > 0,
            ),
            (Members::Ports(m), SetSource::NamedPort { protocol, .. }) => {
                Some(named_port_set_edit(
                    family,
                    flips
                        .ports
                        .iter()
                        .map(|&(ip, port)| ((ip, *protocol, port), m.contains_key(&(ip, port)))),
                ))
            }
            _ => None,
        }
    }

    /// Source `id`'s set for `request` (its family and kind), as the table holds it.
    pub(crate) fn set(&self, id: SourceId, request: &SetRequest) -> Set {
        let family = request.family;
        let members = self.sources.get(&id).map(|s| &s.members);
        match (members, &request.source) {
            (Some(Members::Nets { counts, .. }), SetSource::Selector(_)) => {
                selector_set(family, counts.keys())
            }
            (Some(Members::Ports(m)), SetSource::NamedPort { protocol, .. }) => {
                named_port_set(family, m.keys().map(|(ip, port)| (*ip, *protocol, *port)))
            }
            (_, SetSource::Selector(_)) => selector_set(family, []),
            (_, SetSource::NamedPort { .. }) => named_port_set(family, []),
        }
    }

    /// Number of active sources.
    pub(crate) fn active(&self) -> usize {
        self.sources.len()
    }
}

impl Source {
    fn spec_matches(&self, item: &ItemView<'_>) -> bool {
        match &self.spec {
            SetSource::Selector(sel) => sel.matches(item.labels),
            SetSource::NamedPort {
                selector,
                names,
                protocol,
            } => {
                selector.as_ref().is_none_or(|s| s.matches(item.labels))
                    && item
                        .ports
                        .iter()
                        .any(|p| p.protocol == *protocol && names.contains(&p.name))
            }
        }
    }

    /// Adds (`delta = 1`) or removes (`-1`) an item's contribution; true if a member key
    /// appeared or disappeared.
    fn add(&mut self, item: &ItemView<'_>, delta: i32) -> bool {
        let mut changed = false;
        match (&mut self.members, &self.spec) {
            (
                Members::Nets {
                    counts,
                    aggregate,
                    prefixes,
                },
                _,
            ) => {
                for net in &item.nets {
                    if bump(counts, *net, delta) {
                        if net.prefix_len() < net.max_prefix_len() {
                            let family = match net {
                                IpNet::V4(_) => Family::V4,
                                IpNet::V6(_) => Family::V6,
                            };
                            let n = &mut prefixes[slot(family)];
                            *n = if delta > 0 {
                                *n + 1
                            } else {
                                n.saturating_sub(1)
                            };
                        }
                        changed = true;
                        if !self.activating {
                            self.flips.nets.insert(*net);
                            aggregate.flip(counts, *net, delta > 0, &mut self.flips.pieces);
                        }
                    }
                }
            }
            (
                Members::Ports(m),
                SetSource::NamedPort {
                    names, protocol, ..
                },
            ) => {
                for p in item.ports {
                    if p.protocol == *protocol && names.contains(&p.name) {
                        for ip in item.ips {
                            if bump(m, (*ip, p.port), delta) {
                                if !self.activating {
                                    self.flips.ports.insert((*ip, p.port));
                                }
                                changed = true;
                            }
                        }
                    }
                }
            }
            (Members::Ports(_), SetSource::Selector(_)) => {}
        }
        changed
    }
}

/// The index of `family` in per-family counts.
fn slot(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// Adjusts one member's reference count; true on 0 ↔ 1.
fn bump<K: Ord>(m: &mut BTreeMap<K, u32>, key: K, delta: i32) -> bool {
    if delta > 0 {
        let count = m.entry(key).or_insert(0);
        *count += 1;
        *count == 1
    } else {
        match m.get_mut(&key) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                m.remove(&key);
                true
            }
            None => {
                debug_assert!(false, "BUG: member removed more often than added");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::values::Protocol;
    use bulkhead_dataplane::rules::Family;
    use bulkhead_dataplane::table::SetKind;
    use bulkhead_selector::Selector;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn view<'a>(l: &'a LabelMap, ips: &'a [IpAddr], ports: &'a [NamedPort]) -> ItemView<'a> {
        ItemView {
            labels: l,
            nets: ips.iter().map(|ip| IpNet::from(*ip)).collect(),
            ips,
            ports,
        }
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Source `src`'s set for `spec` in `family`.
    fn table_set(idx: &IpSetIndex, src: SourceId, spec: &SetSource, family: Family) -> Set {
        let request = SetRequest {
            family,
            source: spec.clone(),
        };
        idx.set(src, &request)
    }

    #[test]
    fn shared_addresses_leave_with_their_last_owner() {
        let mut idx = IpSetIndex::default();
        let spec = SetSource::Selector(Selector::parse("app == 'a'").expect("valid"));
        let src = idx.acquire(&spec, |_| None);
        let a = labels(&[("app", "a")]);
        let b = labels(&[("app", "b")]);
        let ip: Vec<IpAddr> = vec!["10.0.0.1".parse().expect("ip")];
        idx.update_item(ItemId(1), None, Some(&view(&a, &ip, &[])));
        idx.update_item(ItemId(2), None, Some(&view(&a, &ip, &[])));
        assert_eq!(idx.take_dirty().len(), 1);
        let hosts = table_set(&idx, src, &spec, Family::V4);
        assert_eq!(hosts.kind, SetKind::Ipv4Hosts);
        assert_eq!(hosts.elements, set(&["10.0.0.1"]));
        // One owner relabelled: the address stays, nothing is dirty.
        idx.update_item(
            ItemId(1),
            Some(&view(&a, &ip, &[])),
            Some(&view(&b, &ip, &[])),
        );
        assert!(idx.take_dirty().is_empty());
        idx.update_item(ItemId(2), Some(&view(&a, &ip, &[])), None);
        assert_eq!(idx.take_dirty().len(), 1);
        assert!(table_set(&idx, src, &spec, Family::V4).elements.is_empty());
        idx.release(src);
        assert_eq!(idx.active(), 0);
        assert!(idx.item_sources.is_empty());
    }

    #[test]
    fn overlapping_networks_aggregate_like_the_renderer() {
        let mut idx = IpSetIndex::default();
        let spec = SetSource::Selector(Selector::parse("has(ext)").expect("valid"));
        let src = idx.acquire(&spec, |_| None);
        let l = labels(&[("ext", "")]);
        let wide = ItemView {
            labels: &l,
            nets: vec!["10.0.0.0/16".parse().expect("net")],
            ips: &[],
            ports: &[],
        };
        let narrow = ItemView {
            nets: vec!["10.0.1.0/24".parse().expect("net")],
            ..wide.clone()
        };
        idx.update_item(ItemId(1), None, Some(&narrow));
        idx.update_item(ItemId(2), None, Some(&wide));
        let nets = table_set(&idx, src, &spec, Family::V4);
        assert_eq!(nets.kind, SetKind::Ipv4);
        assert_eq!(nets.elements, set(&["10.0.0.0/16"]));
        idx.update_item(ItemId(2), Some(&wide), None);
        let nets = table_set(&idx, src, &spec, Family::V4);
        assert_eq!(nets.elements, set(&["10.0.1.0/24"]));
    }

    #[test]
    fn named_ports_follow_port_names_and_activation_scans() {
        let l = labels(&[("app", "a")]);
        let ip: Vec<IpAddr> = vec![
            "10.0.0.1".parse().expect("ip"),
            "fd00::1".parse().expect("ip"),
        ];
        let ports = vec![NamedPort {
            name: "http".into(),
            protocol: Protocol::TCP,
            port: 8080,
        }];
        let mut idx = IpSetIndex::default();
        idx.update_item(ItemId(7), None, Some(&view(&l, &ip, &ports)));
        let spec = SetSource::NamedPort {
            selector: None,
            names: vec!["http".into()],
            protocol: Protocol::TCP,
        };
        let (l2, ip2, ports2) = (l.clone(), ip.clone(), ports.clone());
        let src = idx.acquire(&spec, |id| {
            (id == ItemId(7)).then(|| view(&l2, &ip2, &ports2))
        });
        let v4 = table_set(&idx, src, &spec, Family::V4);
        assert_eq!(v4.kind, SetKind::Ipv4Port);
        assert_eq!(v4.elements, set(&["10.0.0.1 . tcp . 8080"]));
        let v6 = table_set(&idx, src, &spec, Family::V6);
        assert_eq!(v6.elements, set(&["fd00::1 . tcp . 8080"]));
        idx.update_item(
            ItemId(7),
            Some(&view(&l, &ip, &ports)),
            Some(&view(&l, &ip, &[])),
        );
        assert!(table_set(&idx, src, &spec, Family::V4).elements.is_empty());
    }
}
