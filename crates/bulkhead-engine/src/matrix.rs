//! Connectivity matrix: the verdict of every endpoint-to-endpoint connection on one port.
//!
//! Each cell is exactly what [`Cluster::evaluate`] answers for the same flow; the matrix
//! only skips the trace (it runs the verdict-only walk, [`Cluster::verdict`]), resolves
//! each endpoint's address once instead of once per cell, and spreads the rows over the
//! machine's cores.

use std::net::IpAddr;

use bulkhead_api::values::Protocol;

use crate::compile::Address;
use crate::decision::Verdict;
use crate::flow::Flow;
use crate::model::{Cluster, Mode};

impl Cluster {
    /// Who can connect to whom: `result[i][j]` is the verdict, in `mode`, of a connection
    /// from endpoint `endpoints[i]` to endpoint `endpoints[j]` with `protocol` to `port`
    /// (a port-carrying protocol), where `endpoints` are indexes into
    /// [`Cluster::endpoints`].
    ///
    /// The flow is `Flow::with_port(src, dst, protocol, port)` between the first addresses
    /// of the two endpoints, so every cell equals the `verdict` of
    /// [`Cluster::evaluate`] for that flow (`enforced` or `pending` as `mode` says). As
    /// with `evaluate`, the policy that applies at an address is that of the endpoint
    /// owning it (workloads before hosts), and the diagonal is an endpoint connecting to
    /// itself. An endpoint without an address cannot be reached or connect: its row and
    /// column are `Deny`.
    ///
    /// Rows are computed in parallel on up to [`std::thread::available_parallelism`]
    /// threads.
    ///
    /// # Panics
    ///
    /// If an index is out of range.
    pub fn connectivity(
        &self,
        mode: Mode,
        endpoints: &[usize],
        protocol: Protocol,
        port: u16,
    ) -> Vec<Vec<Verdict>> {
        let ips: Vec<Option<IpAddr>> = endpoints
            .iter()
            .map(|&i| self.endpoints[i].ips.first().copied())
            .collect();
        // Each endpoint's address as a source (no port) and as a destination.
        let sources: Vec<Option<Address<'_>>> = ips
            .iter()
            .map(|ip| ip.map(|ip| self.address(ip, None)))
            .collect();
        let destinations: Vec<Option<Address<'_>>> = ips
            .iter()
            .map(|ip| ip.map(|ip| self.address(ip, Some(port))))
            .collect();
        let row = |i: usize| -> Vec<Verdict> {
            destinations
                .iter()
                .map(|dst| match (&sources[i], dst) {
                    (Some(src), Some(dst)) => {
                        let flow = Flow::with_port(src.ip, dst.ip, protocol, port);
                        self.verdict_between(mode, &flow, src, dst)
                    }
                    _ => Verdict::Deny,
                })
                .collect()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(endpoints.len());
        if threads <= 1 {
            return (0..endpoints.len()).map(row).collect();
        }
        // Interleaved rows, so that every thread gets a similar mix of endpoints.
        let mut parts: Vec<Vec<(usize, Vec<Verdict>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let row = &row;
                    s.spawn(move || {
                        (t..endpoints.len())
                            .step_by(threads)
                            .map(|i| (i, row(i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a connectivity worker panicked"))
                .collect()
        });
        let mut out: Vec<Vec<Verdict>> = vec![Vec::new(); endpoints.len()];
        for part in &mut parts {
            for (i, r) in part.drain(..) {
                out[i] = r;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_api::load_str;

    use super::*;

    /// Two namespaces; a deny-by-default tier; web may reach api on 8080 only; db open to
    /// api; a staged policy that would open everything to db; a pod without an address.
    const CLUSTER: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: quarantine}
spec:
  tier: security
  selector: quarantine == 'true'
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: api, namespace: a}
spec:
  selector: app == 'api'
  ingress:
    - action: Log
    - action: Allow
      protocol: TCP
      source: {selector: app == 'web'}
      destination: {ports: [http]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: b}
spec:
  selector: app == 'db'
  ingress:
    - action: Allow
      source: {namespaceSelector: all(), selector: app == 'api'}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: db, namespace: b}
spec:
  selector: app == 'db'
  ingress: [{action: Allow}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: a, labels: {app: api}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: b, labels: {app: db}}
status: {podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: b, labels: {app: web, quarantine: 'true'}}
status: {podIP: 10.0.0.4}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: b, labels: {app: web}}
"#;

    #[test]
    fn every_cell_is_what_evaluate_says() {
        let loaded = load_str("matrix.yaml", CLUSTER).expect("valid resources");
        let cluster = Cluster::build(loaded.iter().map(|l| &l.resource)).expect("valid model");
        let all: Vec<usize> = (0..cluster.endpoints().len()).collect();
        let mut denied = 0;
        for port in [8080, 9090] {
            for mode in [Mode::Enforced, Mode::Pending] {
                let matrix = cluster.connectivity(mode, &all, Protocol::TCP, port);
                assert_eq!(matrix.len(), all.len());
                for (i, row) in matrix.iter().enumerate() {
                    assert_eq!(row.len(), all.len());
                    for (j, &got) in row.iter().enumerate() {
                        let (src, dst) = (&cluster.endpoints()[i], &cluster.endpoints()[j]);
                        let (Some(&s), Some(&d)) = (src.ips.first(), dst.ips.first()) else {
                            assert_eq!(got, Verdict::Deny, "{} -> {}", src.name, dst.name);
                            continue;
                        };
                        let flow = Flow::with_port(s, d, Protocol::TCP, port);
                        let decision = cluster.evaluate(&flow);
                        let want = match mode {
                            Mode::Enforced => decision.verdict(),
                            Mode::Pending => decision.pending_verdict(),
                        };
                        assert_eq!(got, want, "{mode:?} {flow}");
                        assert_eq!(cluster.verdict(mode, &flow), want, "{mode:?} {flow}");
                        denied += usize::from(got == Verdict::Deny);
                    }
                }
            }
        }
        // The fixture exercises both answers.
        assert!(denied > 0 && denied < 2 * 2 * 16);
        // A subset, in another order, gives the same cells.
        let sub = cluster.connectivity(Mode::Enforced, &[2, 0], Protocol::TCP, 8080);
        let full = cluster.connectivity(Mode::Enforced, &all, Protocol::TCP, 8080);
        assert_eq!(
            sub,
            vec![vec![full[2][2], full[2][0]], vec![full[0][2], full[0][0]]]
        );
    }
}
