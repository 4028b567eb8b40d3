//! The node's own `Node` resource on the server, kept as calico-node keeps it: the
//! addresses of the node's interfaces (not its workloads'). The agent itself does not
//! need it (the kernel knows its own addresses), but `check` and `explain` do: they
//! tell a workload's traffic to its own node, and the node's to its workloads, by the
//! node's addresses, which otherwise only host endpoints and hand-written `Node`s give.
//!
//! It runs on a thread of its own, so a slow or absent server never delays enforcement.
//! It writes only `spec.addresses` (a JSON merge patch; the `Node` is created when
//! absent), so anything else a `Node` holds (BGP settings from `calicoctl`, say) stays,
//! and only when the server's `Node` holds other addresses: a restart writes nothing,
//! and a `Node` deleted or edited by hand is put back at the next comparison.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_api::calico::{NodeAddress, NodeSpec};
use bulkhead_api::{Kind, Object, ObjectMeta, Resource};
use bulkhead_client::Client;
use bulkhead_dataplane::render::HostInterfaces;

use crate::interfaces::{self, AddressWatch};

/// After a failed write, the next try comes this much later.
const RETRY: Duration = Duration::from_secs(5);
/// How often the publisher looks for an announced change or a due write.
const TICK: Duration = Duration::from_millis(200);
/// The address type the agent writes (Calico's for the addresses calico-node detects).
const ADDRESS_TYPE: &str = "CalicoNodeIP";

/// The node's own addresses among `interfaces`: every address of an interface that is
/// not a workload's (`workload_prefix`), except loopback and link-local ones, sorted.
pub fn node_addresses(interfaces: &HostInterfaces, workload_prefix: &str) -> Vec<IpAddr> {
    let own = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unicast_link_local() && !v6.is_unspecified(),
    };
    let addresses: BTreeSet<IpAddr> = interfaces
        .iter()
        .filter(|(name, _)| !name.starts_with(workload_prefix))
        .flat_map(|(_, addrs)| addrs.iter().copied())
        .filter(own)
        .collect();
    addresses.into_iter().collect()
}

/// Keeps one node's `Node` resource up to date on the server.
pub struct NodePublisher {
    client: Client,
    node: String,
    netns: Option<String>,
    workload_prefix: String,
    /// The addresses last found on the server (or written there), and when.
    confirmed: Option<(Vec<IpAddr>, Instant)>,
    /// Addresses the server refused to take (401, 403): not asked again for them.
    refused: Option<Vec<IpAddr>>,
}

impl NodePublisher {
    /// A publisher for node `node`, whose interfaces are in `netns` (or the agent's own
    /// namespace).
    pub fn new(
        client: Client,
        node: &str,
        netns: Option<&str>,
        workload_prefix: &str,
    ) -> NodePublisher {
        NodePublisher {
            client,
            node: node.to_string(),
            netns: netns.map(str::to_string),
            workload_prefix: workload_prefix.to_string(),
            confirmed: None,
            refused: None,
        }
    }

    /// Reads the node's addresses and writes them if the server's `Node` holds others
    /// (or is gone); `Ok(true)` when it wrote. The server is asked only when the
    /// addresses changed or the last answer is [`interfaces::RESYNC`] old, so that a
    /// deleted or edited `Node` comes back.
    pub fn publish(&mut self) -> Result<bool, String> {
        let found = interfaces::read(self.netns.as_deref())?;
        let addresses = node_addresses(&found, &self.workload_prefix);
        let fresh =
            |(a, at): &(Vec<IpAddr>, Instant)| *a == addresses && at.elapsed() < interfaces::RESYNC;
        if self.refused.as_ref() == Some(&addresses) || self.confirmed.as_ref().is_some_and(fresh) {
            return Ok(false);
        }
        let listed: Vec<NodeAddress> = addresses
            .iter()
            .map(|ip| NodeAddress {
                address: ip.to_string(),
                kind: Some(ADDRESS_TYPE.to_string()),
            })
            .collect();
        let written = match self.client.get(Kind::Node, None, &self.node) {
            Ok(Resource::Node(n)) if n.spec.addresses == listed => Ok(false),
            Ok(_) => {
                let patch = serde_json::json!({ "spec": { "addresses": listed } });
                self.client
                    .patch(Kind::Node, None, &self.node, &patch)
                    .map(|_| true)
            }
            Err(e) if e.is_not_found() => {
                let node = Resource::Node(Object {
                    metadata: ObjectMeta {
                        name: self.node.clone(),
                        ..ObjectMeta::default()
                    },
                    spec: NodeSpec {
                        addresses: listed,
                        ..NodeSpec::default()
                    },
                });
                self.client.create(&node).map(|_| true)
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(wrote) => {
                if wrote {
                    tracing::info!(node = %self.node, addresses = ?addresses, "published the node's addresses");
                }
                self.confirmed = Some((addresses, Instant::now()));
                self.refused = None;
                Ok(wrote)
            }
            // Every refused request is audited: a token without the right is not asked
            // again until the addresses change.
            Err(e) if matches!(e.code(), Some(401 | 403)) => {
                self.refused = Some(addresses);
                Err(format!("{e} (not tried again until the addresses change)"))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Publishes until `stop` is set: at once, then whenever the kernel announces an
    /// address or link change, and at least every [`interfaces::RESYNC`] (every
    /// [`interfaces::UNWATCHED`] without a watch). A failed write is tried again
    /// five seconds later, unless the server refused it (401, 403: then at the next
    /// change of the addresses); the first failure of a run of them is logged as a
    /// warning.
    pub fn run(mut self, stop: &AtomicBool) {
        let watch = AddressWatch::open(self.netns.as_deref())
            .inspect_err(|e| tracing::warn!(error = %e, "cannot watch the node's addresses"))
            .ok();
        let every = if watch.is_some() {
            interfaces::RESYNC
        } else {
            interfaces::UNWATCHED
        };
        let mut due = Instant::now();
        let mut failing = false;
        while !stop.load(Ordering::Relaxed) {
            let announced = watch.as_ref().is_some_and(AddressWatch::changed);
            if announced || Instant::now() >= due {
                match self.publish() {
                    Ok(_) => {
                        failing = false;
                        due = Instant::now() + every;
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(node = %self.node, %error, "cannot publish the node's addresses; trying again");
                        }
                        failing = true;
                        due = Instant::now() + RETRY;
                    }
                }
            }
            std::thread::sleep(TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_s_addresses_are_its_own_interfaces_global_ones() {
        let json = br#"[
            {"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}, {"local": "::1"}, {"local": "10.66.0.9"}]},
            {"ifname": "eth0", "addr_info": [{"local": "10.66.1.1"}, {"local": "fe80::1"}, {"local": "fd66::1"}]},
            {"ifname": "eth1", "addr_info": [{"local": "169.254.1.1"}, {"local": "10.66.1.1"}]},
            {"ifname": "cali1234", "addr_info": [{"local": "10.65.0.1"}]}
        ]"#;
        let found = interfaces::parse(json).expect("parses");
        let want: Vec<IpAddr> = ["10.66.0.9", "10.66.1.1", "fd66::1"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(node_addresses(&found, "cali"), want);
    }
}
