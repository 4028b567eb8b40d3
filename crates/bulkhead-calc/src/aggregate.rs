//! The union of a multiset of prefixes as its maximal prefixes (what
//! [`IpNet::aggregate`] computes from scratch, and what an nft interval set holds),
//! kept up to date as prefixes join and leave, at a cost that follows the change.
//!
//! The pieces are disjoint, and each is a maximal prefix inside the union: its parent is
//! not wholly covered. When member `m` flips, the union changes only inside `m`, and
//! only if no other member contains `m`:
//! - `m` joins: unless a piece already contains it, the pieces inside `m` give way to
//!   `m`, which then merges with its sibling while the sibling is a piece (and so on
//!   up).
//! - `m` leaves: the piece `r` that contained it splits into the siblings on the way from
//!   `m` up to `r` (all still covered) and the pieces of the members inside `m`.
//!
//! So a change looks at one path of at most 32 (IPv4) or 128 (IPv6) prefixes, plus the
//! members and pieces inside `m` itself: one address for an endpoint.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::RangeInclusive;

use ipnet::IpNet;

/// The maximal prefixes of a union of member prefixes.
#[derive(Debug, Default)]
pub(crate) struct Aggregate {
    pieces: BTreeSet<IpNet>,
}

impl Aggregate {
    /// The aggregate of `members`, computed at once.
    pub(crate) fn of(members: impl IntoIterator<Item = IpNet>) -> Aggregate {
        let members: Vec<IpNet> = members.into_iter().collect();
        Aggregate {
            pieces: IpNet::aggregate(&members).into_iter().collect(),
        }
    }

    /// The pieces, in address order (both families: IPv4 first).
    pub(crate) fn pieces(&self) -> &BTreeSet<IpNet> {
        &self.pieces
    }

    /// Brings the pieces up to date after member `m` (truncated) flipped: it is a key of
    /// `members` now (`joined`) or is not any more. Records each piece that appears or
    /// disappears in `flipped`.
    pub(crate) fn flip<V>(
        &mut self,
        members: &BTreeMap<IpNet, V>,
        m: IpNet,
        joined: bool,
        flipped: &mut HashSet<IpNet>,
    ) {
        if (0..m.prefix_len()).any(|len| members.contains_key(&truncate(m, len))) {
            return;
        }
        if joined {
            if self.container(m).is_some() {
                return;
            }
            for p in self.inside(m) {
                self.remove(p, flipped);
            }
            self.insert(m, flipped);
            self.merge_up(m, flipped);
        } else {
            let Some(r) = self.container(m) else {
                debug_assert!(false, "BUG: a member that left was not covered");
                return;
            };
            self.remove(r, flipped);
            let mut step = m;
            while step.prefix_len() > r.prefix_len() {
                self.insert(sibling(step), flipped);
                step = truncate(step, step.prefix_len() - 1);
            }
            let within: Vec<IpNet> = match bounds(m) {
                Some(b) => members
                    .range(b)
                    .map(|(k, _)| *k)
                    .filter(|k| *k != m && m.contains(k))
                    .collect(),
                None => Vec::new(),
            };
            for p in IpNet::aggregate(&within) {
                self.insert(p, flipped);
                if p == m {
                    self.merge_up(m, flipped);
                }
            }
        }
    }

    /// The piece that contains `m` (or is `m`), if any.
    fn container(&self, m: IpNet) -> Option<IpNet> {
        let last = IpNet::new(m.network(), m.max_prefix_len()).ok()?;
        self.pieces
            .range(..=last)
            .next_back()
            .filter(|p| p.contains(&m))
            .copied()
    }

    /// The pieces inside `m` (none contains it).
    fn inside(&self, m: IpNet) -> Vec<IpNet> {
        bounds(m).map_or_else(Vec::new, |b| self.pieces.range(b).copied().collect())
    }

    /// Merges `p` with its sibling, and the parent with its own, while both are pieces.
    fn merge_up(&mut self, mut p: IpNet, flipped: &mut HashSet<IpNet>) {
        while p.prefix_len() > 0 && self.pieces.contains(&sibling(p)) {
            self.remove(p, flipped);
            self.remove(sibling(p), flipped);
            p = truncate(p, p.prefix_len() - 1);
            self.insert(p, flipped);
        }
    }

    fn insert(&mut self, p: IpNet, flipped: &mut HashSet<IpNet>) {
        if self.pieces.insert(p) {
            flipped.insert(p);
        }
    }

    fn remove(&mut self, p: IpNet, flipped: &mut HashSet<IpNet>) {
        if self.pieces.remove(&p) {
            flipped.insert(p);
        }
    }
}

/// The range of keys whose address lies inside `m`, in the order of `IpNet` (address,
/// then length).
fn bounds(m: IpNet) -> Option<RangeInclusive<IpNet>> {
    let first = IpNet::new(m.network(), 0).ok()?;
    let last = IpNet::new(m.broadcast(), m.max_prefix_len()).ok()?;
    Some(first..=last)
}

/// `p` cut to `len` bits.
fn truncate(p: IpNet, len: u8) -> IpNet {
    IpNet::new(p.addr(), len).map_or(p, |n| n.trunc())
}

/// The other half of `p`'s parent (`p` for a prefix of length 0).
fn sibling(p: IpNet) -> IpNet {
    let parent = truncate(p, p.prefix_len().saturating_sub(1));
    parent
        .subnets(p.prefix_len())
        .ok()
        .and_then(|mut halves| halves.find(|h| *h != p))
        .unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Prefixes of a small IPv4 space (and a few IPv6), so that they overlap, nest and
    /// sit side by side.
    fn prefix() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            4 => (0u8..16, 28u8..=32).prop_map(|(i, len)| {
                truncate(IpNet::new(format!("10.0.0.{i}").parse().expect("ip"), len).expect("net"), len)
            }),
            1 => (0u8..4, 126u8..=128).prop_map(|(i, len)| {
                truncate(IpNet::new(format!("fd00::{i}").parse().expect("ip"), len).expect("net"), len)
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_flip_leaves_the_aggregate_of_the_members(
            steps in prop::collection::vec((prefix(), any::<bool>()), 1..60)
        ) {
            let mut members: BTreeMap<IpNet, u32> = BTreeMap::new();
            let mut agg = Aggregate::default();
            for (p, add) in steps {
                let before = agg.pieces.clone();
                let mut flipped = HashSet::new();
                let changed = if add {
                    let c = members.entry(p).or_insert(0);
                    *c += 1;
                    *c == 1
                } else {
                    match members.get(&p).copied() {
                        Some(1) => { members.remove(&p); true }
                        Some(c) => { members.insert(p, c - 1); false }
                        None => false,
                    }
                };
                if changed {
                    agg.flip(&members, p, add, &mut flipped);
                }
                let keys: Vec<IpNet> = members.keys().copied().collect();
                let want: BTreeSet<IpNet> = IpNet::aggregate(&keys).into_iter().collect();
                prop_assert_eq!(&agg.pieces, &want);
                // What flipped is exactly what differs.
                let differ: HashSet<IpNet> = before.symmetric_difference(&want).copied().collect();
                prop_assert!(differ.iter().all(|p| flipped.contains(p)));
            }
        }
    }

    #[test]
    fn a_full_block_merges_up_and_splits_along_the_path() {
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        let mut members = BTreeMap::new();
        let mut agg = Aggregate::default();
        let mut flipped = HashSet::new();
        for i in 0..4 {
            let m = net(&format!("10.0.0.{i}/32"));
            members.insert(m, 1);
            agg.flip(&members, m, true, &mut flipped);
        }
        assert_eq!(agg.pieces, [net("10.0.0.0/30")].into());
        flipped.clear();
        members.remove(&net("10.0.0.2/32"));
        agg.flip(&members, net("10.0.0.2/32"), false, &mut flipped);
        assert_eq!(agg.pieces, [net("10.0.0.0/31"), net("10.0.0.3/32")].into());
        assert_eq!(
            flipped,
            [net("10.0.0.0/30"), net("10.0.0.0/31"), net("10.0.0.3/32")].into()
        );
    }
}
