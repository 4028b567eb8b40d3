//! `--failsafe-inbound` / `--failsafe-outbound`, shared by `agent` and `check` so that a
//! check can be asked with the ports a node's agent enforces.

use bulkhead_api::values::Protocol;
use bulkhead_engine::failsafe::Failsafe;

/// The host endpoints' failsafe ports, as Felix's environment writes them.
#[derive(clap::Args, Debug, Clone)]
pub struct FailsafeArgs {
    /// Ports a host endpoint always lets in, before any policy: `tcp:22,udp:68,…` or
    /// `none` (default: Felix's, tcp:22, udp:68, tcp:179, tcp:2379, tcp:2380, tcp:5473,
    /// tcp:6443, tcp:6666, tcp:6667).
    #[arg(long, env = "BULKHEAD_FAILSAFE_INBOUND", value_name = "PORTS", value_parser = ports)]
    failsafe_inbound: Option<Ports>,
    /// Ports a host endpoint always lets out, before any policy: `udp:53,…` or `none`
    /// (default: Felix's, udp:53, udp:67, tcp:179, tcp:2379, tcp:2380, tcp:5473,
    /// tcp:6443, tcp:6666, tcp:6667).
    #[arg(long, env = "BULKHEAD_FAILSAFE_OUTBOUND", value_name = "PORTS", value_parser = ports)]
    failsafe_outbound: Option<Ports>,
}

/// One flag's port list (one value to clap, not many).
#[derive(Debug, Clone)]
struct Ports(Vec<(Protocol, u16)>);

fn ports(text: &str) -> Result<Ports, String> {
    Failsafe::parse_ports(text).map(Ports)
}

impl FailsafeArgs {
    /// The failsafe ports these flags give (Felix's defaults where absent).
    pub fn failsafe(&self) -> Failsafe {
        let default = Failsafe::default();
        Failsafe {
            inbound: self
                .failsafe_inbound
                .clone()
                .map_or(default.inbound, |p| p.0),
            outbound: self
                .failsafe_outbound
                .clone()
                .map_or(default.outbound, |p| p.0),
        }
    }
}
