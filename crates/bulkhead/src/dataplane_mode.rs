//! The conformance runner's dataplane mode: each case becomes a node sandbox with one
//! network namespace per pod, external and host; the node's table (and each host's own
//! table for its HostEndpoint) is rendered and applied through the agent's code path
//! (`bulkhead_dataplane::render` + `Dataplane::apply`), and probes are real packets.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bulkhead_api::values::Protocol;
use bulkhead_conformance::case::NetpolCase;
use bulkhead_conformance::fixture::Fixture;
use bulkhead_conformance::{Backend, ProbeRequest};
use bulkhead_dataplane::{CommandRunner, Dataplane, LocalEndpoint, RenderConfig, Tagging, render};
use bulkhead_engine::{Cluster, EndpointKind, Verdict};
use bulkhead_netns::{BatchOptions, Endpoint, NodeSandbox, Probe, Service, unique_name};

/// Probe timeout: namespaces on one machine answer in well under a millisecond, so a
/// connection that has not completed by then was dropped.
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// Placeholder IPv4 network for endpoints that only have IPv6 (the sandbox needs one).
const PLACEHOLDER_V4: [u8; 3] = [192, 0, 2];

/// Runs cases in real network namespaces.
#[derive(Default)]
pub struct DataplaneBackend {
    world: Option<World>,
}

/// One case's namespaces and dataplanes. Fields drop in order: the dataplanes first, so
/// that their `nft -i` sessions have ended before the namespaces they run in are deleted.
struct World {
    node_dataplane: Dataplane<CommandRunner>,
    host_dataplanes: HashMap<String, Dataplane<CommandRunner>>,
    node: NodeSandbox,
    endpoints: HashMap<String, Endpoint>,
    served: HashMap<String, HashSet<Service>>,
    placeholders: u8,
}

impl World {
    fn new() -> Result<World, String> {
        let node = NodeSandbox::new(&unique_name("node")).map_err(|e| e.to_string())?;
        let node_dataplane = Dataplane::new(CommandRunner::in_netns(node.name()));
        Ok(World {
            node,
            endpoints: HashMap::new(),
            served: HashMap::new(),
            node_dataplane,
            host_dataplanes: HashMap::new(),
            placeholders: 0,
        })
    }

    /// Attaches an endpoint namespace for `id` unless it exists.
    fn ensure(
        &mut self,
        id: &str,
        kind: bulkhead_netns::EndpointKind,
        ips: &[IpAddr],
    ) -> Result<(), String> {
        if self.endpoints.contains_key(id) {
            return Ok(());
        }
        let v4 = ips.iter().find_map(|ip| match ip {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        });
        let v6: Option<Ipv6Addr> = ips.iter().find_map(|ip| match ip {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        });
        let v4 = match v4 {
            Some(a) => a,
            None => {
                self.placeholders += 1;
                let [a, b, c] = PLACEHOLDER_V4;
                Ipv4Addr::new(a, b, c, self.placeholders)
            }
        };
        let sandbox_id = id.replace('/', ".");
        let endpoint = self
            .node
            .add_peer(kind, &sandbox_id, v4, v6)
            .map_err(|e| format!("cannot attach {id}: {e}"))?;
        self.endpoints.insert(id.to_string(), endpoint);
        Ok(())
    }

    fn serve(&mut self, id: &str, service: Service) -> Result<(), String> {
        let served = self.served.entry(id.to_string()).or_default();
        if served.contains(&service) {
            return Ok(());
        }
        let endpoint = self
            .endpoints
            .get(id)
            .ok_or_else(|| format!("no namespace for {id}"))?;
        endpoint
            .netns()
            .serve(&[service])
            .map_err(|e| format!("cannot serve on {id}: {e}"))?;
        served.insert(service);
        Ok(())
    }
}

impl Backend for DataplaneBackend {
    fn name(&self) -> &'static str {
        "dataplane"
    }

    fn skip_reason(&self, case: &NetpolCase) -> Option<String> {
        if let Err(e) = bulkhead_netns::nft_preflight() {
            return Some(format!("needs root, iproute2 and nftables: {e}"));
        }
        case.tags
            .iter()
            .any(|t| t == "sctp")
            .then(|| "sctp: this kernel has no SCTP sockets to probe with".to_string())
    }

    fn sync(&mut self, fixture: &Fixture, cluster: &Cluster) -> Result<(), String> {
        if self.world.is_none() {
            self.world = Some(World::new()?);
        }
        let world = self.world.as_mut().ok_or("no sandbox")?;
        for pod in &fixture.pods {
            let ips: Vec<IpAddr> = [pod.v4, pod.v6].into_iter().flatten().collect();
            world.ensure(&pod.id(), bulkhead_netns::EndpointKind::Workload, &ips)?;
        }
        for ext in &fixture.externals {
            world.ensure(&ext.id, bulkhead_netns::EndpointKind::External, &ext.ips)?;
        }
        // A host is a namespace of its own with its own table. A `*` HostEndpoint covers
        // all its interfaces; one with a named interface (or placed by its expectedIPs)
        // covers the namespace's one interface, whatever the case calls it. Its node names
        // the FelixConfiguration of its own.
        type Host<'a> = (String, Vec<IpAddr>, &'a str, Option<String>);
        let hosts: Vec<Host> = cluster
            .endpoints()
            .iter()
            .filter(|e| e.kind == EndpointKind::Host)
            .map(|e| {
                let interface = if e.all_interfaces {
                    "*"
                } else {
                    bulkhead_netns::ENDPOINT_IFNAME
                };
                let node = e.node.as_deref().map(str::to_string);
                (e.name.to_string(), e.ips.clone(), interface, node)
            })
            .collect();
        for (name, ips, _, _) in &hosts {
            world.ensure(
                &format!("host/{name}"),
                bulkhead_netns::EndpointKind::Host,
                ips,
            )?;
        }

        let mut local = Vec::new();
        for pod in &fixture.pods {
            let endpoint = world
                .endpoints
                .get(&pod.id())
                .ok_or("pod namespace missing")?;
            local.push(LocalEndpoint::workload(
                &pod.namespace,
                &pod.name,
                endpoint.host_ifname(),
            ));
        }
        // Tags on: the corpus then also checks that they change no verdict. Each node
        // takes the settings its FelixConfigurations give it, as its agent would.
        let config = |node: Option<&str>| RenderConfig {
            workload_prefix: "cali".into(),
            tagging: Tagging::On,
            host_defaults: cluster.host_defaults(node).clone(),
            ..RenderConfig::default()
        };
        world
            .node_dataplane
            .apply(render(cluster, &local, &config(None)))
            .map_err(|e| e.to_string())?;
        for (name, _, interface, node) in &hosts {
            let id = format!("host/{name}");
            let netns = world
                .endpoints
                .get(&id)
                .ok_or("host namespace missing")?
                .netns()
                .name()
                .to_string();
            let dataplane = world
                .host_dataplanes
                .entry(name.clone())
                .or_insert_with(|| Dataplane::new(CommandRunner::in_netns(&netns)));
            let hep = LocalEndpoint::host(name, interface);
            dataplane
                .apply(render(cluster, &[hep], &config(node.as_deref())))
                .map_err(|e| e.to_string())?;
        }
        // Every probe is a new flow: forget the flows of earlier probes, which conntrack
        // would let through as established (a reused source port) whatever the policy
        // now says.
        let tracking = std::iter::once(world.node.netns()).chain(
            hosts
                .iter()
                .filter_map(|(name, ..)| world.endpoints.get(&format!("host/{name}")))
                .map(|e| e.netns()),
        );
        for netns in tracking {
            netns.flush_conntrack().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn probe(
        &mut self,
        _cluster: &Cluster,
        requests: &[ProbeRequest],
    ) -> Result<Vec<Verdict>, String> {
        let world = self.world.as_mut().ok_or("probe before sync")?;
        for r in requests {
            let service = match r.flow.protocol {
                Protocol::TCP => r.flow.dst_port.map(Service::Tcp),
                Protocol::UDP => r.flow.dst_port.map(Service::Udp),
                _ => None,
            };
            if let Some(s) = service
                && world.endpoints.contains_key(&r.to)
            {
                world.serve(&r.to, s)?;
            }
        }
        let world = self.world.as_ref().ok_or("probe before sync")?;
        let mut probes = Vec::with_capacity(requests.len());
        for r in requests {
            let from = world
                .endpoints
                .get(&r.from)
                .ok_or_else(|| format!("no namespace for {}", r.from))?;
            let protocol = match r.flow.protocol {
                Protocol::TCP => bulkhead_netns::Protocol::Tcp,
                Protocol::UDP => bulkhead_netns::Protocol::Udp,
                Protocol::ICMP | Protocol::ICMPV6 => bulkhead_netns::Protocol::Icmp,
                Protocol::SCTP => bulkhead_netns::Protocol::Sctp,
                other => return Err(format!("cannot probe protocol {other} with real packets")),
            };
            probes.push(
                Probe::new(
                    from.netns(),
                    protocol,
                    r.flow.dst,
                    r.flow.dst_port.unwrap_or(0),
                )
                .with_source(r.flow.src)
                .with_timeout(PROBE_TIMEOUT),
            );
        }
        let options = BatchOptions {
            parallelism: 128,
            deadline: Duration::from_secs(60),
        };
        Ok(bulkhead_netns::run_batch(&probes, &options)
            .into_iter()
            .map(|reached| {
                if reached {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                }
            })
            .collect())
    }

    fn finish(&mut self) {
        // Dropping the world removes every namespace, veth and server it created.
        self.world = None;
    }
}
