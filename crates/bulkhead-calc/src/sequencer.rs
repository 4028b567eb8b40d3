//! The node's intended table, changed in place during a flush, and the minimal delta of
//! each flush in dependency order (Felix's `EventSequencer`).
//!
//! During a flush the graph writes objects freely (a chain may be written twice, a set
//! removed and re-added); the sequencer remembers the value each touched object had before
//! the flush (for a set edited element by element, each edited element's presence) and,
//! at [`TableSequencer::finish`], compares it with the final value. Only
//! real differences become [`Change`]s, so a flush that ends where it started emits
//! nothing, whatever happened in between.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_dataplane::Touched;
use bulkhead_dataplane::rules::SetEdit;
use bulkhead_dataplane::table::{Chain, Set, SetKind, Table};

/// One change to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A set is created (empty; elements follow as [`Change::AddElements`]).
    AddSet {
        /// Set name.
        name: String,
        /// Key type.
        kind: SetKind,
    },
    /// Elements join a set.
    AddElements {
        /// Set name.
        set: String,
        /// The elements, as nft text.
        elements: Vec<String>,
    },
    /// Elements leave a set that stays.
    RemoveElements {
        /// Set name.
        set: String,
        /// The elements, as nft text.
        elements: Vec<String>,
    },
    /// A verdict map is created (empty).
    AddMap {
        /// Map name.
        name: String,
    },
    /// A chain is created or its rules replaced.
    WriteChain {
        /// Chain name.
        name: String,
        /// The whole chain.
        chain: Chain,
    },
    /// A verdict-map entry is added or changed.
    SetVerdict {
        /// Map name.
        map: String,
        /// Key (quoted interface name).
        key: String,
        /// Verdict (`jump …`).
        verdict: String,
    },
    /// A verdict-map entry is removed.
    RemoveVerdict {
        /// Map name.
        map: String,
        /// Key.
        key: String,
    },
    /// A chain is deleted (nothing refers to it any more).
    RemoveChain {
        /// Chain name.
        name: String,
    },
    /// A set is deleted: nothing refers to it any more or, when an [`Change::AddSet`] of
    /// the same name follows, its key type changed (rules still refer to it then).
    RemoveSet {
        /// Set name.
        name: String,
    },
}

/// The changes of one flush, in the order a dataplane can apply them without ever
/// referring to something missing: sets and their elements, then chains (the ones jumped
/// to before the ones that jump), then verdict-map entries; removals in reverse (map
/// entries, then chains that jump before chains jumped to, then sets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// The changes, in application order.
    pub changes: Vec<Change>,
}

impl Delta {
    /// True when the flush changed nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The objects the changes touch, for a diff limited to them
    /// ([`bulkhead_dataplane::Dataplane::apply_within`]).
    pub fn touched(&self) -> Touched {
        let mut touched = Touched::nothing();
        for c in &self.changes {
            match c {
                Change::AddSet { name, .. } | Change::RemoveSet { name } => touched.set(name),
                Change::AddElements { set, elements }
                | Change::RemoveElements { set, elements } => touched.elements(set, elements),
                Change::AddMap { name } => touched.map(name),
                Change::SetVerdict { map, .. } | Change::RemoveVerdict { map, .. } => {
                    touched.map(map)
                }
                Change::WriteChain { name, .. } | Change::RemoveChain { name } => {
                    touched.chain(name)
                }
            }
        }
        touched
    }

    /// Applies the changes to `table` (what a dataplane does with them; tests replay
    /// deltas to check they are exact).
    pub fn apply_to(&self, table: &mut Table) {
        for c in &self.changes {
            match c {
                Change::AddSet { name, kind } => {
                    table.sets.insert(
                        name.clone(),
                        Set {
                            kind: *kind,
                            elements: BTreeSet::new(),
                        },
                    );
                }
                Change::AddElements { set, elements } => {
                    if let Some(s) = table.sets.get_mut(set) {
                        s.elements.extend(elements.iter().cloned());
                    }
                }
                Change::RemoveElements { set, elements } => {
                    if let Some(s) = table.sets.get_mut(set) {
                        for e in elements {
                            s.elements.remove(e);
                        }
                    }
                }
                Change::AddMap { name } => {
                    table.maps.entry(name.clone()).or_default();
                }
                Change::WriteChain { name, chain } => {
                    table.chains.insert(name.clone(), chain.clone());
                }
                Change::SetVerdict { map, key, verdict } => {
                    table
                        .maps
                        .entry(map.clone())
                        .or_default()
                        .elements
                        .insert(key.clone(), verdict.clone());
                }
                Change::RemoveVerdict { map, key } => {
                    if let Some(m) = table.maps.get_mut(map) {
                        m.elements.remove(key);
                    }
                }
                Change::RemoveChain { name } => {
                    table.chains.remove(name);
                }
                Change::RemoveSet { name } => {
                    table.sets.remove(name);
                }
            }
        }
    }
}

/// The table and what the current flush touched.
#[derive(Debug, Default)]
pub(crate) struct TableSequencer {
    table: Table,
    sets: BTreeMap<String, Option<Set>>,
    /// Sets edited element by element ([`TableSequencer::edit_set`]) and not tracked
    /// whole in `sets`: each edited element, and whether the set held it before the
    /// flush.
    element_origins: BTreeMap<String, BTreeMap<String, bool>>,
    chains: BTreeMap<String, Option<Chain>>,
    verdicts: BTreeMap<(String, String), Option<String>>,
    maps: BTreeSet<String>,
}

/// Elements leaving set `name`, then elements joining it, as changes (none if empty).
fn push_element_changes(out: &mut Vec<Change>, name: String, gone: Vec<String>, came: Vec<String>) {
    if !gone.is_empty() {
        out.push(Change::RemoveElements {
            set: name.clone(),
            elements: gone,
        });
    }
    if !came.is_empty() {
        out.push(Change::AddElements {
            set: name,
            elements: came,
        });
    }
}

/// Chains that others jump to come first when written, last when removed.
fn chain_depth(name: &str, chain: Option<&Chain>) -> u8 {
    if chain.is_some_and(|c| c.hook.is_some()) || matches!(name, "forward" | "input" | "output") {
        2
    } else if name.starts_with("w.") || name.starts_with("h.") {
        1
    } else {
        0
    }
}

impl TableSequencer {
    /// The table as of the last change.
    pub(crate) fn table(&self) -> &Table {
        &self.table
    }

    /// Sets set `name` to exactly `set`.
    pub(crate) fn put_set(&mut self, name: &str, set: Set) {
        let old = self.table.sets.insert(name.to_string(), set);
        self.track_set(name, old);
    }

    /// Deletes set `name`.
    pub(crate) fn remove_set(&mut self, name: &str) {
        let old = self.table.sets.remove(name);
        self.track_set(name, old);
    }

    /// Removes `edit.gone` from set `name` and adds `edit.came` (an existing set whose key
    /// type stays): the cost and the delta follow the edit, not the set.
    pub(crate) fn edit_set(&mut self, name: &str, edit: SetEdit) {
        let Some(set) = self.table.sets.get_mut(name) else {
            return;
        };
        let whole = self.sets.contains_key(name);
        let origins = self.element_origins.entry(name.to_string()).or_default();
        for e in edit.gone {
            if set.elements.remove(&e) && !whole {
                origins.entry(e).or_insert(true);
            }
        }
        for e in edit.came {
            if !set.elements.contains(&e) {
                set.elements.insert(e.clone());
                if !whole {
                    origins.entry(e).or_insert(false);
                }
            }
        }
        if origins.is_empty() {
            self.element_origins.remove(name);
        }
    }

    /// Remembers set `name` as it was before the flush (`old`: before the write that
    /// replaces it), unless the flush already did, undoing its element edits.
    fn track_set(&mut self, name: &str, mut old: Option<Set>) {
        if self.sets.contains_key(name) {
            return;
        }
        if let (Some(origins), Some(o)) = (self.element_origins.remove(name), old.as_mut()) {
            for (e, held) in origins {
                if held {
                    o.elements.insert(e);
                } else {
                    o.elements.remove(&e);
                }
            }
        }
        self.sets.insert(name.to_string(), old);
    }

    /// Sets chain `name` to `chain`.
    pub(crate) fn put_chain(&mut self, name: &str, chain: Chain) {
        if self.table.chains.get(name) == Some(&chain) {
            return;
        }
        let old = self.table.chains.insert(name.to_string(), chain);
        self.chains.entry(name.to_string()).or_insert(old);
    }

    /// Deletes chain `name`.
    pub(crate) fn remove_chain(&mut self, name: &str) {
        if !self.table.chains.contains_key(name) {
            return;
        }
        let old = self.table.chains.remove(name);
        self.chains.entry(name.to_string()).or_insert(old);
    }

    /// Creates verdict map `name` unless it exists.
    pub(crate) fn put_map(&mut self, name: &str) {
        if !self.table.maps.contains_key(name) {
            self.table.maps.insert(name.to_string(), Default::default());
            self.maps.insert(name.to_string());
        }
    }

    /// Sets (`Some`) or removes entry `key` of verdict map `map` (which must exist).
    pub(crate) fn put_verdict(&mut self, map: &str, key: &str, verdict: Option<String>) {
        let m = self.table.maps.entry(map.to_string()).or_default();
        let old = match verdict {
            Some(v) => m.elements.insert(key.to_string(), v),
            None => m.elements.remove(key),
        };
        self.verdicts
            .entry((map.to_string(), key.to_string()))
            .or_insert(old);
    }

    /// Ends the flush: the changes from the table before it to the table now.
    pub(crate) fn finish(&mut self) -> Delta {
        let mut new_sets = Vec::new();
        let mut set_edits = Vec::new();
        let mut set_removals = Vec::new();
        for (name, old) in std::mem::take(&mut self.sets) {
            let new = self.table.sets.get(&name);
            match (old, new) {
                (None, None) => {}
                (Some(_), None) => set_removals.push(Change::RemoveSet { name }),
                (old, Some(new)) => {
                    let (old_elements, created) = match old {
                        Some(o) if o.kind == new.kind => (o.elements, false),
                        Some(_) => {
                            set_removals.push(Change::RemoveSet { name: name.clone() });
                            (BTreeSet::new(), true)
                        }
                        None => (BTreeSet::new(), true),
                    };
                    let came: Vec<String> =
                        new.elements.difference(&old_elements).cloned().collect();
                    let gone: Vec<String> =
                        old_elements.difference(&new.elements).cloned().collect();
                    let out = if created {
                        &mut new_sets
                    } else {
                        &mut set_edits
                    };
                    if created {
                        out.push(Change::AddSet {
                            name: name.clone(),
                            kind: new.kind,
                        });
                    }
                    push_element_changes(out, name, gone, came);
                }
            }
        }
        for (name, origins) in std::mem::take(&mut self.element_origins) {
            let Some(set) = self.table.sets.get(&name) else {
                continue;
            };
            let (mut gone, mut came) = (Vec::new(), Vec::new());
            for (e, held) in origins {
                match (held, set.elements.contains(&e)) {
                    (true, false) => gone.push(e),
                    (false, true) => came.push(e),
                    _ => {}
                }
            }
            push_element_changes(&mut set_edits, name, gone, came);
        }
        let mut writes: Vec<(u8, Change)> = Vec::new();
        let mut chain_removals: Vec<(u8, Change)> = Vec::new();
        for (name, old) in std::mem::take(&mut self.chains) {
            let new = self.table.chains.get(&name);
            match (old, new) {
                (None, None) => {}
                (Some(o), None) => chain_removals
                    .push((chain_depth(&name, Some(&o)), Change::RemoveChain { name })),
                (old, Some(new)) if old.as_ref() != Some(new) => writes.push((
                    chain_depth(&name, Some(new)),
                    Change::WriteChain {
                        name,
                        chain: new.clone(),
                    },
                )),
                _ => {}
            }
        }
        writes.sort_by_key(|(depth, _)| *depth);
        chain_removals.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
        let mut verdicts = Vec::new();
        let mut verdict_removals = Vec::new();
        for ((map, key), old) in std::mem::take(&mut self.verdicts) {
            let new = self.table.maps.get(&map).and_then(|m| m.elements.get(&key));
            match (old, new) {
                (Some(_), None) => verdict_removals.push(Change::RemoveVerdict { map, key }),
                (old, Some(v)) if old.as_ref() != Some(v) => verdicts.push(Change::SetVerdict {
                    map,
                    key,
                    verdict: v.clone(),
                }),
                _ => {}
            }
        }
        // A set whose key type changed (a selector set between addresses and prefixes) is
        // removed, then created again. A kernel refuses to delete a set that rules still
        // use, so a dataplane applying this needs the chains that use it emptied first,
        // as `bulkhead_dataplane::TableDiff` does; `Delta::apply_to` has no such rule.
        let (replaced, set_removals): (Vec<Change>, Vec<Change>) =
            set_removals.into_iter().partition(|c| match c {
                Change::RemoveSet { name } => self.table.sets.contains_key(name),
                _ => false,
            });
        let mut changes = replaced;
        changes.extend(new_sets);
        changes.extend(
            std::mem::take(&mut self.maps)
                .into_iter()
                .map(|name| Change::AddMap { name }),
        );
        changes.extend(set_edits);
        changes.extend(writes.into_iter().map(|(_, c)| c));
        changes.extend(verdicts);
        changes.extend(verdict_removals);
        changes.extend(chain_removals.into_iter().map(|(_, c)| c));
        changes.extend(set_removals);
        Delta { changes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(rules: &[&str]) -> Chain {
        Chain {
            hook: None,
            rules: rules.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn set(elements: &[&str]) -> Set {
        Set {
            kind: SetKind::Ipv4,
            elements: elements.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_flush_that_ends_where_it_started_emits_nothing() {
        let mut seq = TableSequencer::default();
        seq.put_set("s", set(&["10.0.0.1"]));
        seq.put_chain("p.x.in", chain(&["drop"]));
        let first = seq.finish();
        assert_eq!(first.changes.len(), 3);
        seq.remove_chain("p.x.in");
        seq.put_chain("p.x.in", chain(&["drop"]));
        seq.put_set("s", set(&["10.0.0.1", "10.0.0.2"]));
        seq.put_set("s", set(&["10.0.0.1"]));
        assert!(seq.finish().is_empty());
    }

    #[test]
    fn element_edits_emit_what_changed_however_they_mix_with_whole_writes() {
        let edit = |gone: &[&str], came: &[&str]| SetEdit {
            gone: gone.iter().map(|e| e.to_string()).collect(),
            came: came.iter().map(|e| e.to_string()).collect(),
        };
        let mut seq = TableSequencer::default();
        seq.put_set("s", set(&["10.0.0.1", "10.0.0.2"]));
        seq.put_set("t", set(&["10.0.0.1"]));
        let mut replay = Table::default();
        seq.finish().apply_to(&mut replay);

        // Edits that undo each other, and one that stays.
        seq.edit_set("s", edit(&["10.0.0.1"], &["10.0.0.3"]));
        seq.edit_set("s", edit(&["10.0.0.3"], &["10.0.0.1", "10.0.0.4"]));
        // An edit, then a whole write of the same set: the delta is from before both.
        seq.edit_set("t", edit(&["10.0.0.1"], &["10.0.0.5"]));
        seq.put_set("t", set(&["10.0.0.5", "10.0.0.6"]));
        let delta = seq.finish();
        assert_eq!(
            delta.changes,
            [
                Change::RemoveElements {
                    set: "t".into(),
                    elements: vec!["10.0.0.1".into()]
                },
                Change::AddElements {
                    set: "t".into(),
                    elements: vec!["10.0.0.5".into(), "10.0.0.6".into()]
                },
                Change::AddElements {
                    set: "s".into(),
                    elements: vec!["10.0.0.4".into()]
                },
            ]
        );
        delta.apply_to(&mut replay);
        assert_eq!(&replay, seq.table());
    }

    #[test]
    fn changes_come_in_dependency_order_and_replay_exactly() {
        let mut seq = TableSequencer::default();
        seq.put_set("old", set(&["10.0.0.1"]));
        seq.put_chain("p.old.in", chain(&["ip saddr @old drop"]));
        seq.put_chain("w.a.in", chain(&["jump p.old.in"]));
        seq.put_verdict("wl_to", "\"a\"", Some("jump w.a.in".into()));
        let mut replay = Table::default();
        seq.finish().apply_to(&mut replay);
        assert_eq!(&replay, seq.table());

        seq.put_verdict("wl_to", "\"a\"", None);
        seq.remove_chain("w.a.in");
        seq.remove_chain("p.old.in");
        seq.remove_set("old");
        seq.put_set("new", set(&["10.0.0.2"]));
        seq.put_chain("w.b.in", chain(&["jump p.new.in"]));
        seq.put_chain("p.new.in", chain(&["ip saddr @new drop"]));
        seq.put_verdict("wl_to", "\"b\"", Some("jump w.b.in".into()));
        let delta = seq.finish();
        let kinds: Vec<&str> = delta
            .changes
            .iter()
            .map(|c| match c {
                Change::AddSet { .. } => "add-set",
                Change::AddMap { .. } => "add-map",
                Change::AddElements { .. } => "add-elements",
                Change::RemoveElements { .. } => "remove-elements",
                Change::WriteChain { name, .. } if name.starts_with("p.") => "write-policy",
                Change::WriteChain { .. } => "write-endpoint",
                Change::SetVerdict { .. } => "set-verdict",
                Change::RemoveVerdict { .. } => "remove-verdict",
                Change::RemoveChain { name } if name.starts_with("p.") => "remove-policy",
                Change::RemoveChain { .. } => "remove-endpoint",
                Change::RemoveSet { .. } => "remove-set",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "add-set",
                "add-elements",
                "write-policy",
                "write-endpoint",
                "set-verdict",
                "remove-verdict",
                "remove-endpoint",
                "remove-policy",
                "remove-set"
            ]
        );
        delta.apply_to(&mut replay);
        assert_eq!(&replay, seq.table());
    }
}
