//! Which network sets contain an address, without scanning every set's CIDRs: the CIDRs
//! are grouped by family and prefix length, each group a hash map from the network to the
//! sets that list it. A lookup masks the address once per prefix length in use (at most
//! 33 for IPv4, 129 for IPv6, a handful in practice), so its cost does not grow with the
//! number of sets or CIDRs (a threat feed of thousands of networks costs what one does).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::endpoint::NetworkSet;
use crate::index::FastMap;

/// One prefix length of one family: `(IPv4?, prefix length)`, and each network of that
/// length → the indexes of the sets that list it.
type Group = ((bool, u8), FastMap<IpAddr, Vec<usize>>);

/// The network sets' CIDRs, indexed for "which sets contain this address".
#[derive(Debug, Default)]
pub(crate) struct NetIndex {
    groups: Vec<Group>,
}

impl NetIndex {
    /// Indexes the CIDRs of `sets` (by position).
    pub(crate) fn new(sets: &[NetworkSet]) -> NetIndex {
        let mut groups: Vec<Group> = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            for net in &set.nets {
                let key = (net.addr().is_ipv4(), net.prefix_len());
                let at = match groups.iter().position(|(k, _)| *k == key) {
                    Some(at) => at,
                    None => {
                        groups.push((key, FastMap::default()));
                        groups.len() - 1
                    }
                };
                let members = groups[at].1.entry(net.network()).or_default();
                if members.last() != Some(&i) {
                    members.push(i);
                }
            }
        }
        NetIndex { groups }
    }

    /// The indexes of the sets with a CIDR that contains `ip`, ascending.
    pub(crate) fn sets_containing(&self, ip: IpAddr) -> Vec<usize> {
        let mut out = Vec::new();
        for ((v4, len), networks) in &self.groups {
            if *v4 != ip.is_ipv4() {
                continue;
            }
            if let Ok(net) = IpNet::new(ip, *len)
                && let Some(sets) = networks.get(&net.network())
            {
                out.extend_from_slice(sets);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(nets: &[IpNet]) -> NetworkSet {
        NetworkSet {
            namespace: None,
            name: "s".into(),
            own_labels: Default::default(),
            labels: Default::default(),
            nets: nets.to_vec(),
        }
    }

    /// Addresses and networks drawn from a small space, so they overlap often.
    fn net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u8>(), 0u8..=32).prop_map(|(b, len)| {
                IpNet::new(IpAddr::from([10, 0, b & 0x0f, b]), len)
                    .expect("valid length")
                    .trunc()
            }),
            (any::<u8>(), 0u8..=128).prop_map(|(b, len)| {
                let ip: IpAddr = format!("fd00::{b:x}").parse().expect("valid address");
                IpNet::new(ip, len).expect("valid length").trunc()
            }),
        ]
    }

    proptest! {
        #[test]
        fn finds_exactly_the_sets_a_scan_finds(
            sets in prop::collection::vec(prop::collection::vec(net(), 0..4), 0..6),
            probes in prop::collection::vec(net(), 1..8),
        ) {
            let sets: Vec<NetworkSet> = sets.iter().map(|n| set(n)).collect();
            let index = NetIndex::new(&sets);
            for probe in probes {
                let ip = probe.addr();
                let scan: Vec<usize> = sets
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.nets.iter().any(|n| n.contains(&ip)))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(index.sets_containing(ip), scan, "{}", ip);
            }
        }
    }
}
