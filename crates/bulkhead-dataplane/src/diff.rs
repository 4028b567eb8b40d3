//! What differs between the installed table and the intended one, found in one walk.
//!
//! A [`TableDiff`] borrows the intended table and owns the little it takes from the
//! installed one (the names and elements that go away), so after the kernel took the
//! change, [`TableDiff::apply_to`] brings the installed copy up to date by patching it:
//! nothing is cloned but what changed. The same diff renders the nft transaction
//! ([`TableDiff::script`]) and, when only elements change, the netlink batch
//! ([`crate::netlink::element_changes`]).
//!
//! Order inside the transaction (every object exists before anything refers to it, and
//! nothing is deleted while referred to):
//! 1. every changed chain and every chain that goes away flushed;
//! 2. retyped sets deleted, then new sets, maps and chains added (empty);
//! 3. set element removals then additions;
//! 4. every new or changed chain filled;
//! 5. map element changes;
//! 6. maps, then chains, then sets that go away deleted.
//!
//! A set whose key type changes (a selector set turning from a hash of addresses into an
//! interval set, say) is deleted and created again under the same name. The kernel
//! refuses to delete a set a rule refers to, so every chain that refers to it counts as
//! changed even when its text is not: step 1 empties it before the set goes, step 4
//! refills it once the new set is there. A chain that goes away may refer to it too,
//! which is why step 1 empties those as well.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::table::{
    Chain, DiffStats, Set, SetKind, TABLE, Table, VerdictMap, add_chain, add_map, add_map_elements,
    add_set, fill_chain, join,
};

/// Elements that leave and join one set that exists before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElements<'a> {
    /// The set.
    pub set: &'a str,
    /// Its key type.
    pub kind: SetKind,
    /// Elements removed.
    pub gone: Vec<String>,
    /// Elements added.
    pub came: Vec<&'a String>,
    /// The set was empty before (the kernel needs an interval set's first element
    /// encoded differently).
    pub was_empty: bool,
}

/// Entries that leave (or change value in) and join one verdict map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapElements<'a> {
    /// The map.
    pub map: &'a str,
    /// Keys removed, or whose verdict changes.
    pub gone: Vec<String>,
    /// Entries added, or with a new verdict.
    pub came: Vec<(&'a String, &'a String)>,
}

/// The objects of a table that a change may have touched, by name: a diff limited to
/// them ([`TableDiff::within`]) finds what a full one would, in a walk as long as the
/// change rather than the table. A set is touched whole (anything about it may differ)
/// or in some elements only (it exists on both sides with the same key type, and only
/// those elements may differ), so that a change to a big set costs what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// `None`: anything may differ (nothing is known about the change).
    names: Option<TouchedNames>,
}

/// The names in a [`Touched`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TouchedNames {
    sets: BTreeSet<String>,
    /// Sets touched in these elements only (a set in `sets` is touched whole).
    set_elements: BTreeMap<String, BTreeSet<String>>,
    maps: BTreeSet<String>,
    chains: BTreeSet<String>,
}

impl Touched {
    /// Nothing touched: the tables are equal.
    pub fn nothing() -> Touched {
        Touched {
            names: Some(TouchedNames::default()),
        }
    }

    /// True when nothing is touched (the tables are known to be equal).
    pub fn is_nothing(&self) -> bool {
        self.names.as_ref().is_some_and(|n| {
            n.sets.is_empty()
                && n.set_elements.is_empty()
                && n.maps.is_empty()
                && n.chains.is_empty()
        })
    }

    /// Anything may differ: a diff walks both tables whole.
    pub fn everything() -> Touched {
        Touched { names: None }
    }

    /// Set `name` may differ (existence, key type or elements).
    pub fn set(&mut self, name: &str) {
        if let Some(n) = &mut self.names {
            n.set_elements.remove(name);
            n.sets.insert(name.to_string());
        }
    }

    /// Set `name` exists in both tables with the same key type, and may differ in
    /// `elements` alone (unless it is touched whole).
    pub fn elements<'e>(&mut self, name: &str, elements: impl IntoIterator<Item = &'e String>) {
        if let Some(n) = &mut self.names
            && !n.sets.contains(name)
        {
            n.set_elements
                .entry(name.to_string())
                .or_default()
                .extend(elements.into_iter().cloned());
        }
    }

    /// Verdict map `name` may differ (existence or entries).
    pub fn map(&mut self, name: &str) {
        if let Some(n) = &mut self.names {
            n.maps.insert(name.to_string());
        }
    }

    /// Chain `name` may differ (existence or rules).
    pub fn chain(&mut self, name: &str) {
        if let Some(n) = &mut self.names {
            n.chains.insert(name.to_string());
        }
    }

    /// Adds what `other` touched.
    pub fn extend(&mut self, other: &Touched) {
        match (&mut self.names, &other.names) {
            (Some(n), Some(o)) => {
                for name in &o.sets {
                    n.set_elements.remove(name);
                }
                n.sets.extend(o.sets.iter().cloned());
                for (name, elements) in &o.set_elements {
                    if !n.sets.contains(name) {
                        n.set_elements
                            .entry(name.clone())
                            .or_default()
                            .extend(elements.iter().cloned());
                    }
                }
                n.maps.extend(o.maps.iter().cloned());
                n.chains.extend(o.chains.iter().cloned());
            }
            (names, None) => *names = None,
            (None, Some(_)) => {}
        }
    }
}

/// Everything that turns one table into another.
#[derive(Debug, Default)]
pub struct TableDiff<'a> {
    /// Sets that are new, or whose key type changed (deleted and created again).
    new_sets: Vec<(&'a str, &'a Set, bool)>,
    /// Element changes of sets that stay.
    pub(crate) set_elements: Vec<SetElements<'a>>,
    /// Maps that are new.
    new_maps: Vec<&'a str>,
    /// Chains that are new (`true`), whose content changes, or that refer to a retyped
    /// set, in name order.
    chains: Vec<(&'a str, &'a Chain, bool)>,
    /// Entry changes of maps (new ones included).
    pub(crate) map_elements: Vec<MapElements<'a>>,
    /// Maps, chains and sets that go away.
    gone_maps: Vec<String>,
    gone_chains: Vec<String>,
    gone_sets: Vec<String>,
}

impl<'a> TableDiff<'a> {
    /// What turns `old` into `new`.
    pub fn between(old: &Table, new: &'a Table) -> TableDiff<'a> {
        let mut d = TableDiff::default();
        // Sets and chains are many: both tables are walked once in key order, no lookups.
        for pair in zip(&old.sets, &new.sets) {
            d.set(pair);
        }
        for pair in zip(&old.maps, &new.maps) {
            d.map(pair);
        }
        let retyped = d.retyped();
        for pair in zip(&old.chains, &new.chains) {
            d.chain(pair, &retyped);
        }
        d
    }

    /// What turns `old` into `new` when they can differ only in the objects `touched`
    /// names (a calc flush's delta names them): the same diff as [`TableDiff::between`],
    /// found by looking at those objects alone, plus the chains that refer to a set
    /// whose key type changed.
    pub fn within(old: &Table, new: &'a Table, touched: &Touched) -> TableDiff<'a> {
        let Some(names) = &touched.names else {
            return TableDiff::between(old, new);
        };
        let mut d = TableDiff::default();
        // Sets in name order, as the whole walk finds them.
        let mut whole = names.sets.iter().peekable();
        let mut partly = names.set_elements.iter().peekable();
        loop {
            let take_whole = match (whole.peek(), partly.peek()) {
                (Some(w), Some((p, _))) => w <= p,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_whole {
                if let Some(p) = whole.next().and_then(|n| pair(&old.sets, &new.sets, n)) {
                    d.set(p);
                }
            } else if let Some((name, elements)) = partly.next() {
                d.set_within(old, new, name, elements);
            }
        }
        for name in &names.maps {
            if let Some(p) = pair(&old.maps, &new.maps, name) {
                d.map(p);
            }
        }
        let retyped = d.retyped();
        for name in &names.chains {
            if let Some(p) = pair(&old.chains, &new.chains, name) {
                d.chain(p, &retyped);
            }
        }
        if !retyped.is_empty() {
            // Untouched chains are equal in both tables; those that refer to a retyped
            // set are emptied and refilled around its re-creation.
            let others = new
                .chains
                .iter()
                .filter(|(n, _)| !names.chains.contains(*n));
            for (name, chain) in others {
                if refers_to_any(chain, &retyped) {
                    d.chains.push((name, chain, false));
                }
            }
            d.chains.sort_by(|a, b| a.0.cmp(b.0));
        }
        d
    }

    /// One set of either table.
    fn set(&mut self, pair: Pair<'_, 'a, Set>) {
        match pair {
            Pair::Both(o, name, set) if o.kind == set.kind => {
                let (gone, came) = walk(&o.elements, &set.elements);
                self.elements(name, o, set, gone, came);
            }
            Pair::Both(_, name, set) => self.new_sets.push((name, set, true)),
            Pair::New(name, set) => self.new_sets.push((name, set, false)),
            Pair::Old(name) => self.gone_sets.push(name.clone()),
        }
    }

    /// Set `name`, known to differ at most in `elements` when it exists in both tables
    /// with the same key type (else it is compared whole).
    fn set_within(&mut self, old: &Table, new: &'a Table, name: &str, elements: &BTreeSet<String>) {
        let Some(p) = pair(&old.sets, &new.sets, name) else {
            return;
        };
        let Pair::Both(o, name, set) = p else {
            return self.set(p);
        };
        if o.kind != set.kind {
            return self.set(Pair::Both(o, name, set));
        }
        let gone: Vec<String> = elements
            .iter()
            .filter(|e| o.elements.contains(*e) && !set.elements.contains(*e))
            .cloned()
            .collect();
        let came: Vec<&'a String> = elements
            .iter()
            .filter(|e| !o.elements.contains(*e))
            .filter_map(|e| set.elements.get(e))
            .collect();
        self.elements(name, o, set, gone, came);
    }

    /// The element changes of set `name` (`old` before, `new` after, of one kind), if
    /// any.
    fn elements(
        &mut self,
        name: &'a str,
        old: &Set,
        new: &'a Set,
        gone: Vec<String>,
        came: Vec<&'a String>,
    ) {
        if !gone.is_empty() || !came.is_empty() {
            self.set_elements.push(SetElements {
                set: name,
                kind: new.kind,
                gone,
                came,
                was_empty: old.elements.is_empty(),
            });
        }
    }

    /// One verdict map of either table.
    fn map(&mut self, pair: Pair<'_, 'a, VerdictMap>) {
        let empty = VerdictMap::default();
        let (o, name, map) = match pair {
            Pair::Old(name) => return self.gone_maps.push(name.clone()),
            Pair::New(name, map) => {
                self.new_maps.push(name);
                (&empty, name, map)
            }
            Pair::Both(o, name, map) => (o, name, map),
        };
        let gone: Vec<String> = o
            .elements
            .iter()
            .filter(|(k, v)| map.elements.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect();
        let came: Vec<(&String, &String)> = map
            .elements
            .iter()
            .filter(|(k, v)| o.elements.get(*k) != Some(*v))
            .collect();
        if !gone.is_empty() || !came.is_empty() {
            self.map_elements.push(MapElements {
                map: name,
                gone,
                came,
            });
        }
    }

    /// The sets whose key type changes (deleted and created again).
    fn retyped(&self) -> Vec<&'a str> {
        self.new_sets
            .iter()
            .filter(|(_, _, r)| *r)
            .map(|(n, _, _)| *n)
            .collect()
    }

    /// One chain of either table.
    fn chain(&mut self, pair: Pair<'_, 'a, Chain>, retyped: &[&str]) {
        match pair {
            Pair::Both(o, name, chain) if o == chain => {
                if refers_to_any(chain, retyped) {
                    self.chains.push((name, chain, false));
                }
            }
            Pair::Both(_, name, chain) => self.chains.push((name, chain, false)),
            Pair::New(name, chain) => self.chains.push((name, chain, true)),
            Pair::Old(name) => self.gone_chains.push(name.clone()),
        }
    }

    /// True when the two tables are equal.
    pub fn is_empty(&self) -> bool {
        self.elements_only() && self.set_elements.is_empty() && self.map_elements.is_empty()
    }

    /// What changes, for metrics and logs.
    pub fn stats(&self) -> DiffStats {
        let retyped = self.new_sets.iter().filter(|(_, _, r)| *r).count();
        DiffStats {
            elements: self
                .new_sets
                .iter()
                .filter(|(_, _, r)| !r)
                .map(|(_, s, _)| s.elements.len())
                .sum::<usize>()
                + self
                    .set_elements
                    .iter()
                    .map(|e| e.gone.len() + e.came.len())
                    .sum::<usize>()
                + self.map_elements.len(),
            chains: self.chains.len() + self.gone_chains.len(),
            sets: self.new_sets.len()
                + retyped
                + self.new_maps.len()
                + self.gone_maps.len()
                + self.gone_sets.len(),
        }
    }

    /// The nft transaction, one command per line.
    pub fn script(&self) -> String {
        let mut s = String::new();
        // 1. Changed and departing chains emptied, releasing the sets they refer to.
        let changed = self.chains.iter().filter(|(_, _, new)| !*new);
        let gone = self.gone_chains.iter().map(String::as_str);
        for name in changed.map(|(n, _, _)| *n).chain(gone) {
            let _ = writeln!(s, "flush chain {TABLE} {name}");
        }
        // 2. New objects.
        for (name, set, retyped) in &self.new_sets {
            if *retyped {
                let _ = writeln!(s, "delete set {TABLE} {name}");
            }
            add_set(&mut s, name, set);
        }
        for name in &self.new_maps {
            add_map(&mut s, name);
        }
        for (name, chain, _) in self.chains.iter().filter(|(_, _, new)| *new) {
            add_chain(&mut s, name, chain);
        }
        // 3. Element changes of sets that stay.
        for e in &self.set_elements {
            if !e.gone.is_empty() {
                let gone: Vec<&String> = e.gone.iter().collect();
                let _ = writeln!(s, "delete element {TABLE} {} {{ {} }}", e.set, join(&gone));
            }
            if !e.came.is_empty() {
                let _ = writeln!(s, "add element {TABLE} {} {{ {} }}", e.set, join(&e.came));
            }
        }
        // 4. New and changed chains filled.
        for (name, chain, _) in &self.chains {
            fill_chain(&mut s, name, chain);
        }
        // 5. Map elements.
        for m in &self.map_elements {
            if !m.gone.is_empty() {
                let gone: Vec<&String> = m.gone.iter().collect();
                let _ = writeln!(s, "delete element {TABLE} {} {{ {} }}", m.map, join(&gone));
            }
            add_map_elements(&mut s, m.map, m.came.iter().copied());
        }
        // 6. Removals, referrers first.
        for name in &self.gone_maps {
            let _ = writeln!(s, "delete map {TABLE} {name}");
        }
        for name in &self.gone_chains {
            let _ = writeln!(s, "delete chain {TABLE} {name}");
        }
        for name in &self.gone_sets {
            let _ = writeln!(s, "delete set {TABLE} {name}");
        }
        s
    }

    /// True when only set and map elements change.
    pub fn elements_only(&self) -> bool {
        self.new_sets.is_empty()
            && self.new_maps.is_empty()
            && self.chains.is_empty()
            && self.gone_maps.is_empty()
            && self.gone_chains.is_empty()
            && self.gone_sets.is_empty()
    }

    /// Makes `old` (the table this diff started from) equal to the new table, copying
    /// only what changed.
    pub fn apply_to(self, old: &mut Table) {
        for name in &self.gone_sets {
            old.sets.remove(name);
        }
        for name in &self.gone_chains {
            old.chains.remove(name);
        }
        for name in &self.gone_maps {
            old.maps.remove(name);
        }
        for (name, set, _) in self.new_sets {
            old.sets.insert(name.to_string(), set.clone());
        }
        for e in self.set_elements {
            if let Some(s) = old.sets.get_mut(e.set) {
                for g in &e.gone {
                    s.elements.remove(g);
                }
                s.elements.extend(e.came.into_iter().cloned());
            }
        }
        for name in self.new_maps {
            old.maps.entry(name.to_string()).or_default();
        }
        for m in self.map_elements {
            let map = old.maps.entry(m.map.to_string()).or_default();
            for g in &m.gone {
                map.elements.remove(g);
            }
            for (k, v) in m.came {
                map.elements.insert(k.clone(), v.clone());
            }
        }
        for (name, chain, _) in self.chains {
            old.chains.insert(name.to_string(), chain.clone());
        }
    }
}

/// True if a rule of `chain` refers to one of `sets` (`@name`, whole).
fn refers_to_any(chain: &Chain, sets: &[&str]) -> bool {
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    !sets.is_empty()
        && chain.rules.iter().any(|rule| {
            rule.match_indices('@').any(|(at, _)| {
                let rest = &rule[at + 1..];
                let end = rest.find(|c| !name_char(c)).unwrap_or(rest.len());
                sets.contains(&&rest[..end])
            })
        })
}

/// One key of two maps walked together ([`zip`]).
enum Pair<'o, 'n, V> {
    /// Only in the old map.
    Old(&'o String),
    /// Only in the new map.
    New(&'n String, &'n V),
    /// In both: old value, key and new value.
    Both(&'o V, &'n String, &'n V),
}

/// Walks two maps together in key order: one comparison per step, no lookups.
fn zip<'o, 'n, V>(
    old: &'o BTreeMap<String, V>,
    new: &'n BTreeMap<String, V>,
) -> impl Iterator<Item = Pair<'o, 'n, V>> {
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    std::iter::from_fn(move || {
        let order = match (a.peek(), b.peek()) {
            (Some((x, _)), Some((y, _))) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => return None,
        };
        match order {
            Ordering::Less => a.next().map(|(k, _)| Pair::Old(k)),
            Ordering::Greater => b.next().map(|(k, v)| Pair::New(k, v)),
            Ordering::Equal => {
                let (_, o) = a.next()?;
                let (k, v) = b.next()?;
                Some(Pair::Both(o, k, v))
            }
        }
    })
}

/// Key `name` of two maps, as [`zip`] would give it; `None` when neither has it.
fn pair<'o, 'n, V>(
    old: &'o BTreeMap<String, V>,
    new: &'n BTreeMap<String, V>,
    name: &str,
) -> Option<Pair<'o, 'n, V>> {
    match (old.get_key_value(name), new.get_key_value(name)) {
        (Some((_, o)), Some((k, v))) => Some(Pair::Both(o, k, v)),
        (None, Some((k, v))) => Some(Pair::New(k, v)),
        (Some((k, _)), None) => Some(Pair::Old(k)),
        (None, None) => None,
    }
}

/// One merge walk of two sorted sets: what only `old` has, and what only `new` has.
fn walk<'a>(old: &BTreeSet<String>, new: &'a BTreeSet<String>) -> (Vec<String>, Vec<&'a String>) {
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.cmp(y) {
                Ordering::Less => gone.extend(a.next().cloned()),
                Ordering::Greater => came.extend(b.next()),
                Ordering::Equal => {
                    a.next();
                    b.next();
                }
            },
            (Some(_), None) => gone.extend(a.next().cloned()),
            (None, Some(_)) => came.extend(b.next()),
            (None, None) => return (gone, came),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::table::Hook;

    /// A small table: which sets (two kinds per name possible), elements, maps and chains
    /// exist is drawn from a few names, so two draws overlap and differ in every way.
    fn table() -> impl Strategy<Value = Table> {
        let set =
            (any::<bool>(), prop::collection::btree_set(0u8..6, 0..5)).prop_map(|(v6, e)| Set {
                kind: if v6 { SetKind::Ipv6 } else { SetKind::Ipv4 },
                elements: e.into_iter().map(|i| format!("10.0.0.{i}")).collect(),
            });
        let map = prop::collection::btree_map(0u8..4, 0u8..3, 0..4).prop_map(|m| VerdictMap {
            elements: m
                .into_iter()
                .map(|(k, v)| (format!("\"if{k}\""), format!("jump c{v}")))
                .collect(),
        });
        let chain = (any::<bool>(), prop::collection::vec(0u8..6, 0..3)).prop_map(|(h, r)| Chain {
            hook: h.then_some(Hook::Forward),
            rules: r
                .into_iter()
                .map(|i| match i {
                    0..3 => format!("tcp dport {i} accept"),
                    s => format!("ip saddr @s{} accept", s - 3),
                })
                .collect(),
        });
        (
            prop::collection::btree_map(0u8..4, set, 0..4),
            prop::collection::btree_map(0u8..3, map, 0..3),
            prop::collection::btree_map(0u8..4, chain, 0..4),
        )
            .prop_map(|(s, m, c)| Table {
                sets: s.into_iter().map(|(k, v)| (format!("s{k}"), v)).collect(),
                maps: m.into_iter().map(|(k, v)| (format!("m{k}"), v)).collect(),
                chains: c.into_iter().map(|(k, v)| (format!("c{k}"), v)).collect(),
            })
    }

    proptest! {
        #[test]
        fn patching_the_old_table_gives_the_new_one(old in table(), new in table()) {
            let d = TableDiff::between(&old, &new);
            prop_assert_eq!(d.is_empty(), old == new);
            let stats = d.stats();
            prop_assert_eq!(stats.elements_only(), d.elements_only());
            let mut patched = old.clone();
            d.apply_to(&mut patched);
            prop_assert_eq!(patched, new);
        }

        #[test]
        fn a_diff_within_the_touched_objects_is_the_whole_diff(
            old in table(),
            mut new in table(),
            kept in prop::collection::vec(0u8..4, 0..4),
            extra in prop::collection::vec(0u8..4, 0..4),
            partly in prop::collection::vec(any::<bool>(), 4),
        ) {
            // Some of old's chains stay as they were, so that untouched chains refer to
            // sets that change (retyped ones among them).
            for i in kept {
                let name = format!("c{i}");
                match old.chains.get(&name) {
                    Some(chain) => new.chains.insert(name, chain.clone()),
                    None => new.chains.remove(&name),
                };
            }
            // What a delta names: every object that differs, and some that do not.
            // A set on both sides with one key type may be named with the elements that
            // differ (and some that do not: one both have, one neither has).
            let mut touched = Touched::nothing();
            for (i, name) in old.sets.keys().chain(new.sets.keys()).enumerate() {
                match (old.sets.get(name), new.sets.get(name)) {
                    (Some(o), Some(n)) if o == n => {}
                    (Some(o), Some(n)) if o.kind == n.kind && partly[i % 4] => {
                        let both = o.elements.intersection(&n.elements).take(1);
                        let neither = "10.0.0.9".to_string();
                        touched.elements(
                            name,
                            o.elements
                                .symmetric_difference(&n.elements)
                                .chain(both)
                                .chain([&neither]),
                        );
                    }
                    (o, n) if o != n => touched.set(name),
                    _ => {}
                }
            }
            for name in old.maps.keys().chain(new.maps.keys()) {
                if old.maps.get(name) != new.maps.get(name) {
                    touched.map(name);
                }
            }
            for name in old.chains.keys().chain(new.chains.keys()) {
                if old.chains.get(name) != new.chains.get(name) {
                    touched.chain(name);
                }
            }
            for i in extra {
                touched.set(&format!("s{i}"));
                touched.map(&format!("m{i}"));
                touched.chain(&format!("c{i}"));
            }
            let whole = TableDiff::between(&old, &new);
            let within = TableDiff::within(&old, &new, &touched);
            prop_assert_eq!(within.script(), whole.script());
            prop_assert_eq!(within.stats(), whole.stats());
            let mut patched = old.clone();
            within.apply_to(&mut patched);
            prop_assert_eq!(&patched, &new);
            // Knowing nothing of the change means the whole walk.
            let everything = TableDiff::within(&old, &new, &Touched::everything());
            prop_assert_eq!(everything.script(), whole.script());
        }
    }

    #[test]
    fn a_set_touched_whole_absorbs_its_touched_elements() {
        let e = |s: &str| s.to_string();
        let mut a = Touched::nothing();
        a.elements("s", &[e("10.0.0.1")]);
        a.elements("t", &[e("10.0.0.2")]);
        let mut b = Touched::nothing();
        b.set("s");
        b.elements("t", &[e("10.0.0.3")]);
        a.extend(&b);
        let mut want = Touched::nothing();
        want.set("s");
        want.elements("t", &[e("10.0.0.2"), e("10.0.0.3")]);
        assert_eq!(a, want);
        a.elements("s", &[e("10.0.0.4")]);
        assert_eq!(a, want);
    }

    #[test]
    fn touched_names_add_up_and_everything_absorbs_them() {
        let mut a = Touched::nothing();
        a.set("s");
        let mut b = Touched::nothing();
        b.chain("c");
        a.extend(&b);
        let mut both = Touched::nothing();
        both.set("s");
        both.chain("c");
        assert_eq!(a, both);
        a.extend(&Touched::everything());
        assert_eq!(a, Touched::everything());
        a.set("t");
        assert_eq!(a, Touched::everything());
    }

    #[test]
    fn a_retyped_set_is_deleted_and_created_again() {
        let set = |kind, e: &str| Set {
            kind,
            elements: [e.to_string()].into(),
        };
        let mut old = Table::default();
        old.sets.insert("s".into(), set(SetKind::Ipv4, "10.0.0.1"));
        let mut new = Table::default();
        new.sets.insert("s".into(), set(SetKind::Ipv6, "fd00::1"));
        let d = TableDiff::between(&old, &new);
        assert_eq!(
            d.script(),
            "delete set inet bulkhead s\nadd set inet bulkhead s { type ipv6_addr; flags interval; }\nadd element inet bulkhead s { fd00::1 }\n"
        );
        assert_eq!(d.stats().sets, 2);
    }

    #[test]
    fn chains_using_a_retyped_set_are_emptied_before_it_goes() {
        let chain = |rule: &str| Chain {
            hook: None,
            rules: vec![rule.to_string()],
        };
        let mut old = Table::default();
        old.sets.insert(
            "s4_a".into(),
            Set {
                kind: SetKind::Ipv4Hosts,
                elements: ["10.0.0.1".to_string()].into(),
            },
        );
        old.chains
            .insert("uses".into(), chain("ip saddr @s4_a accept"));
        old.chains
            .insert("prefix".into(), chain("ip saddr @s4_ab accept"));
        old.chains
            .insert("other".into(), chain("tcp dport 22 accept"));
        let mut new = old.clone();
        old.chains
            .insert("leaving".into(), chain("ip daddr @s4_a drop"));
        new.sets.get_mut("s4_a").expect("set").kind = SetKind::Ipv4;
        new.sets.get_mut("s4_a").expect("set").elements = ["10.0.0.0/24".to_string()].into();
        let d = TableDiff::between(&old, &new);
        assert_eq!(
            d.script(),
            "flush chain inet bulkhead uses\n\
             flush chain inet bulkhead leaving\n\
             delete set inet bulkhead s4_a\n\
             add set inet bulkhead s4_a { type ipv4_addr; flags interval; }\n\
             add element inet bulkhead s4_a { 10.0.0.0/24 }\n\
             add rule inet bulkhead uses ip saddr @s4_a accept\n\
             delete chain inet bulkhead leaving\n"
        );
        let mut patched = old.clone();
        d.apply_to(&mut patched);
        assert_eq!(patched, new);
    }
}
