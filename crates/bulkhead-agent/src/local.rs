//! Which endpoints this node enforces, and the interfaces they sit behind.

use bulkhead_api::Resource;
use bulkhead_dataplane::LocalEndpoint;
use bulkhead_dataplane::naming::workload_interface;
use bulkhead_engine::EndpointKind;

/// The endpoints of `node`: pods scheduled on it (`spec.nodeName`), WorkloadEndpoints
/// with `spec.node` (their `spec.interfaceName`, or the derived name), and its
/// HostEndpoints (their interface, or `*`).
pub fn local_endpoints(resources: &[Resource], node: &str, prefix: &str) -> Vec<LocalEndpoint> {
    let mut out: Vec<LocalEndpoint> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::Pod(p)
                if p.spec.node_name.as_deref() == Some(node) && !p.spec.host_network =>
            {
                let ns = p
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                Some(LocalEndpoint {
                    kind: EndpointKind::Workload,
                    interface: workload_interface(prefix, &ns, &p.metadata.name),
                    namespace: Some(ns),
                    name: p.metadata.name.clone(),
                })
            }
            Resource::WorkloadEndpoint(w) if w.spec.node == node => {
                let ns = w
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let interface = if w.spec.interface_name.is_empty() {
                    workload_interface(prefix, &ns, &w.metadata.name)
                } else {
                    w.spec.interface_name.clone()
                };
                Some(LocalEndpoint {
                    kind: EndpointKind::Workload,
                    interface,
                    namespace: Some(ns),
                    name: w.metadata.name.clone(),
                })
            }
            Resource::HostEndpoint(h) if h.spec.node == node => Some(LocalEndpoint {
                kind: EndpointKind::Host,
                namespace: None,
                name: h.metadata.name.clone(),
                interface: if h.spec.interface_name.is_empty() {
                    "*".into()
                } else {
                    h.spec.interface_name.clone()
                },
            }),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}
