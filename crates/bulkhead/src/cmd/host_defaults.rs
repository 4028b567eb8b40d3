//! `--failsafe-inbound`, `--failsafe-outbound` and `--default-endpoint-to-host-action`,
//! shared by `agent` and `check` so that a check can be asked with the settings a node's
//! agent enforces. Each flag given wins over the FelixConfigurations, as Felix's
//! environment variables do.

use bulkhead_engine::failsafe::{Failsafe, FailsafePort};
use bulkhead_engine::host_defaults::{EndpointToHost, HostDefaultsLayer};

/// The node's defaults for traffic to and from its host, as Felix's environment writes
/// them; unset flags leave the setting to the FelixConfigurations.
#[derive(clap::Args, Debug, Clone)]
pub struct HostDefaultsArgs {
    /// Ports a host endpoint always lets in, before any policy: `tcp:22,udp:68,…`, an
    /// entry with the source net it is open to as `tcp:10.0.0.0/8:22`, or `none`
    /// (default: Felix's, tcp:22, udp:68, tcp:179, tcp:2379, tcp:2380, tcp:5473, tcp:6443,
    /// tcp:6666, tcp:6667).
    #[arg(long, env = "BULKHEAD_FAILSAFE_INBOUND", value_name = "PORTS", value_parser = ports)]
    failsafe_inbound: Option<Ports>,
    /// Ports a host endpoint always lets out, before any policy: `udp:53,…`, an entry
    /// with the destination net it is open to as `udp:10.96.0.10/32:53`, or `none`
    /// (default: Felix's, udp:53, udp:67, tcp:179, tcp:2379, tcp:2380, tcp:5473,
    /// tcp:6443, tcp:6666, tcp:6667).
    #[arg(long, env = "BULKHEAD_FAILSAFE_OUTBOUND", value_name = "PORTS", value_parser = ports)]
    failsafe_outbound: Option<Ports>,
    /// What a workload's traffic to its own host meets once the workload's egress policy
    /// allowed it: `Drop` (workloads reach their host only by replies; Felix's own
    /// default), `Return` or `Accept` (the egress policy alone decides; what Calico's
    /// manifests set, and the default). The host endpoints' policies never apply to it.
    #[arg(
        long,
        env = "BULKHEAD_DEFAULT_ENDPOINT_TO_HOST_ACTION",
        value_name = "ACTION"
    )]
    default_endpoint_to_host_action: Option<EndpointToHost>,
}

/// One flag's port list (one value to clap, not many).
#[derive(Debug, Clone)]
struct Ports(Vec<FailsafePort>);

fn ports(text: &str) -> Result<Ports, String> {
    Failsafe::parse_ports(text).map(Ports)
}

impl HostDefaultsArgs {
    /// The settings these flags give: each one given wins over the node's
    /// FelixConfigurations (as Felix's environment does); the others come from them, or
    /// from Felix's defaults.
    pub fn overrides(&self) -> HostDefaultsLayer {
        HostDefaultsLayer {
            failsafe_inbound: self.failsafe_inbound.clone().map(|p| p.0),
            failsafe_outbound: self.failsafe_outbound.clone().map(|p| p.0),
            endpoint_to_host: self.default_endpoint_to_host_action,
        }
    }
}
