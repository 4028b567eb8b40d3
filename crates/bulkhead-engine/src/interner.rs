//! Label maps shared by every endpoint and network set that carries the same ones.
//!
//! The replicas of a workload carry the same labels, and so do the endpoints of one
//! namespace after their namespace's labels are flattened in; a cluster has far fewer
//! distinct label maps than endpoints. `Cluster::build` and the calc graph keep one copy
//! of each (as Felix interns its label maps), so that memory grows with the distinct
//! label maps, and selectors evaluated over many endpoints read the same few maps. A map
//! nobody holds any more is dropped at the next sweep, which runs when the interner has
//! doubled since the last one (amortised O(1) per new map).

use std::collections::HashSet;
use std::sync::Arc;

use bulkhead_api::LabelMap;

use crate::endpoint::{Endpoint, Labels, NetworkSet};

/// Below this many maps, no sweep.
const MIN_SWEEP: usize = 1024;

/// The shared label maps.
#[derive(Debug, Default)]
pub struct LabelInterner {
    maps: HashSet<Labels>,
    /// How many maps the last sweep left.
    swept: usize,
}

impl LabelInterner {
    /// `e` with its label maps replaced by the shared ones.
    pub fn endpoint(&mut self, e: Endpoint) -> Endpoint {
        Endpoint {
            own_labels: self.intern(&e.own_labels),
            labels: self.intern(&e.labels),
            ..e
        }
    }

    /// `s` with its label maps replaced by the shared ones.
    pub fn network_set(&mut self, s: NetworkSet) -> NetworkSet {
        NetworkSet {
            own_labels: self.intern(&s.own_labels),
            labels: self.intern(&s.labels),
            ..s
        }
    }

    /// The shared map equal to `labels` (`labels` itself when it is the first).
    pub fn intern(&mut self, labels: &Labels) -> Labels {
        match self.maps.get(&**labels) {
            Some(shared) => Arc::clone(shared),
            None => self.add(Arc::clone(labels)),
        }
    }

    /// The shared map equal to `labels`.
    pub fn intern_map(&mut self, labels: LabelMap) -> Labels {
        match self.maps.get(&labels) {
            Some(shared) => Arc::clone(shared),
            None => self.add(Arc::new(labels)),
        }
    }

    fn add(&mut self, labels: Labels) -> Labels {
        if self.maps.len() >= (2 * self.swept).max(MIN_SWEEP) {
            self.maps.retain(|m| Arc::strong_count(m) > 1);
            self.swept = self.maps.len();
        }
        self.maps.insert(Arc::clone(&labels));
        labels
    }

    /// How many maps are held (some possibly by nobody else until the next sweep).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.maps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(i: usize) -> LabelMap {
        LabelMap::from([("app".to_string(), format!("a{i}"))])
    }

    #[test]
    fn equal_maps_share_one_copy() {
        let mut interner = LabelInterner::default();
        let a = interner.intern_map(map(1));
        let b = interner.intern(&Arc::new(map(1)));
        assert!(Arc::ptr_eq(&a, &b));
        let c = interner.intern_map(map(2));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn maps_nobody_holds_are_swept_once_the_interner_doubles() {
        let mut interner = LabelInterner::default();
        let kept: Vec<Labels> = (0..10).map(|i| interner.intern_map(map(i))).collect();
        for i in 10..MIN_SWEEP {
            drop(interner.intern_map(map(i)));
        }
        assert_eq!(interner.len(), MIN_SWEEP, "no sweep below MIN_SWEEP");
        // The next new map sweeps: only the held ten remain, with it.
        let new = interner.intern_map(map(MIN_SWEEP));
        assert_eq!(interner.len(), kept.len() + 1);
        assert!(Arc::ptr_eq(&kept[3], &interner.intern_map(map(3))));
        drop(new);
    }
}
