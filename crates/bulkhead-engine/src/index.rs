//! An index from endpoint labels to the policies whose selectors could match them.
//!
//! Each selector is filed under one label it requires (reference §1.6, label
//! restrictions): under `label = value` for each allowed value when the selector pins the
//! value, else under "label present", else in the small unindexed list. Candidates for an
//! endpoint are the buckets of its own labels plus the unindexed list; only those are
//! evaluated, so the cost follows the policies that could apply, not all of them.
//!
//! Also here: `FlatLabels`, the layout of an endpoint's labels that evaluation reads
//! (one block of text and a table of key hashes, rather than a tree of separately
//! allocated strings), and the small hash function both use.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bulkhead_api::LabelMap;
use bulkhead_selector::{Labels, Selector};

/// A fast non-cryptographic hash for short keys (label names and values, addresses): the
/// inputs are the cluster's own resources, hashed in memory, never attacker-chosen keys of
/// a long-lived table exposed to the network.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply-rotate steps leave the low bits depending only on the inputs' low
        // bits (addresses 10.0.x.y all share theirs); mix every bit into every bit
        // (MurmurHash3's finaliser) since hash tables index by the low bits.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
    }
}

/// `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A 32-bit tag of a label key: the high half of the multiply-rotate state, which every
/// input bit reaches (no finaliser needed, unlike a table index taken from the low bits).
fn hash_str(s: &str) -> u32 {
    let mut h = FastHasher(s.len() as u64);
    h.write(s.as_bytes());
    (h.0 >> 32) as u32
}

/// Labels laid out for selector evaluation: every key and value in one block of text, and
/// a table of key hashes. Holds exactly the labels of the map it was built from (so a
/// selector matches it exactly when it matches the map), but a lookup reads two small
/// contiguous blocks instead of a tree of separately allocated strings, which matters
/// when the endpoint's labels are not in the CPU cache.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlatLabels {
    /// Per label, in key order: the key's hash and where its key and value end in `text`
    /// (each key starts where the previous value ends).
    entries: Box<[FlatEntry]>,
    text: Box<str>,
}

#[derive(Debug, Clone, Copy)]
struct FlatEntry {
    hash: u32,
    key_end: u32,
    value_end: u32,
}

impl FlatLabels {
    /// The labels of `map`.
    pub(crate) fn new(map: &LabelMap) -> FlatLabels {
        let mut text = String::new();
        let entries = map
            .iter()
            .map(|(k, v)| {
                text.push_str(k);
                let key_end = text.len() as u32;
                text.push_str(v);
                FlatEntry {
                    hash: hash_str(k),
                    key_end,
                    value_end: text.len() as u32,
                }
            })
            .collect();
        FlatLabels {
            entries,
            text: text.into_boxed_str(),
        }
    }

    /// Every label, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.entries.iter().map(move |e| {
            let (k, v) = (start as usize, e.key_end as usize);
            start = e.value_end;
            (&self.text[k..v], &self.text[v..e.value_end as usize])
        })
    }
}

impl Labels for FlatLabels {
    fn get_label(&self, key: &str) -> Option<&str> {
        let hash = hash_str(key);
        let mut start = 0usize;
        for e in self.entries.iter() {
            let key_end = e.key_end as usize;
            if e.hash == hash && &self.text[start..key_end] == key {
                return Some(&self.text[key_end..e.value_end as usize]);
            }
            start = e.value_end as usize;
        }
        None
    }
}

/// Selectors indexed by their label restrictions.
#[derive(Debug, Default, Clone)]
pub struct SelectorIndex {
    by_value: FastMap<String, FastMap<String, Vec<usize>>>,
    by_presence: FastMap<String, Vec<usize>>,
    unindexed: Vec<usize>,
}

impl SelectorIndex {
    /// Files selector `id`. Selectors that can never match are not filed at all.
    pub fn insert(&mut self, id: usize, selector: &Selector) {
        if !selector.possible_to_satisfy() {
            return;
        }
        let restrictions = selector.label_restrictions();
        let by_value = restrictions
            .iter()
            .filter_map(|(label, r)| r.must_have_one_of_values.as_ref().map(|v| (label, v)))
            .min_by_key(|(_, values)| values.len());
        if let Some((label, values)) = by_value {
            let bucket = self.by_value.entry(label.clone()).or_default();
            for v in values {
                bucket.entry(v.clone()).or_default().push(id);
            }
            return;
        }
        match restrictions.iter().find(|(_, r)| r.must_be_present) {
            Some((label, _)) => self.by_presence.entry(label.clone()).or_default().push(id),
            None => self.unindexed.push(id),
        }
    }

    /// Files selector `id` as a candidate for every endpoint (the unindexed baseline).
    pub fn insert_unindexed(&mut self, id: usize) {
        self.unindexed.push(id);
    }

    /// Calls `f` with every selector id that could match `labels` (each at most once).
    pub fn for_each_candidate(&self, labels: &LabelMap, f: impl FnMut(usize)) {
        self.candidates(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())), f)
    }

    /// [`SelectorIndex::for_each_candidate`] over labels given as pairs, each key once.
    pub(crate) fn candidates<'a>(
        &self,
        labels: impl Iterator<Item = (&'a str, &'a str)>,
        mut f: impl FnMut(usize),
    ) {
        for (k, v) in labels {
            if let Some(ids) = self.by_value.get(k).and_then(|vals| vals.get(v)) {
                ids.iter().copied().for_each(&mut f);
            }
            if let Some(ids) = self.by_presence.get(k) {
                ids.iter().copied().for_each(&mut f);
            }
        }
        self.unindexed.iter().copied().for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn candidates_come_from_matching_buckets_only() {
        let sels = [
            "app == 'a'",
            "app in {'a', 'b'} && has(x)",
            "has(x)",
            "!has(y)",
            "app == 'a' && app == 'b'",
        ];
        let mut idx = SelectorIndex::default();
        for (i, s) in sels.iter().enumerate() {
            idx.insert(i, &Selector::parse(s).expect("valid selector"));
        }
        let mut got = Vec::new();
        idx.for_each_candidate(&labels(&[("app", "b"), ("x", "")]), |i| got.push(i));
        got.sort();
        assert_eq!(got, vec![1, 2, 3]);
        let mut got = Vec::new();
        idx.for_each_candidate(&labels(&[("app", "a")]), |i| got.push(i));
        got.sort();
        assert_eq!(got, vec![0, 1, 3]);
    }

    #[test]
    fn flat_labels_hold_exactly_the_map() {
        let map = labels(&[
            ("app", "web"),
            ("", "empty-key"),
            ("empty-value", ""),
            ("projectcalico.org/namespace", "prod"),
            ("projectcalico.org/name", "x"),
        ]);
        let flat = FlatLabels::new(&map);
        for (k, v) in &map {
            assert_eq!(flat.get_label(k), Some(v.as_str()), "{k}");
        }
        for missing in ["ap", "apps", "projectcalico.org/", "web", "x"] {
            assert_eq!(flat.get_label(missing), None, "{missing}");
        }
        let pairs: Vec<(&str, &str)> = flat.iter().collect();
        let want: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, want);
        assert_eq!(FlatLabels::new(&LabelMap::new()).get_label(""), None);
    }
}
