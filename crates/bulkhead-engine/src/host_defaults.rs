//! A node's configuration that changes verdicts: the settings of Felix's
//! `FelixConfiguration` that Bulkhead's agent takes as flags. The evaluator
//! ([`Cluster::set_host_defaults`](crate::Cluster::set_host_defaults)) and the rendered table
//! carry the same value, so `check` answers for the node the agent enforces.

use std::fmt;
use std::str::FromStr;

use crate::failsafe::Failsafe;

/// What happens to a workload's traffic to its own host once the workload's egress policy
/// allowed it (Felix's `DefaultEndpointToHostAction`). The host's own endpoints never
/// judge it: in Calico the traffic between a host and its workloads skips the host
/// endpoints' policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndpointToHost {
    /// Dropped: workloads reach their host only by the replies of connections the host
    /// opened. Felix's own default.
    Drop,
    /// Left to the host's other firewall rules. Bulkhead's table is a table of its own,
    /// which every other table sees the packet after anyway, so this comes to
    /// [`EndpointToHost::Accept`] here.
    Return,
    /// Accepted: the workload's egress policy alone decides. What Calico's shipped
    /// manifests set, and Bulkhead's default.
    #[default]
    Accept,
}

impl EndpointToHost {
    /// Whether the host takes what the workload's egress allowed.
    pub fn admits(self) -> bool {
        self != EndpointToHost::Drop
    }
}

impl FromStr for EndpointToHost {
    type Err = String;

    /// `Drop`, `Return` or `Accept`, in any case (Felix's spellings).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "drop" => Ok(EndpointToHost::Drop),
            "return" => Ok(EndpointToHost::Return),
            "accept" => Ok(EndpointToHost::Accept),
            _ => Err(format!("{text:?}: expected Drop, Return or Accept")),
        }
    }
}

impl fmt::Display for EndpointToHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointToHost::Drop => "Drop",
            EndpointToHost::Return => "Return",
            EndpointToHost::Accept => "Accept",
        })
    }
}

/// A node's defaults for traffic to and from its host, around the policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDefaults {
    /// The host endpoints' failsafe ports.
    pub failsafe: Failsafe,
    /// What a workload's traffic to its own host meets after its egress policy.
    pub endpoint_to_host: EndpointToHost,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_felix_spellings_in_any_case() {
        for (text, action) in [
            ("Drop", EndpointToHost::Drop),
            ("DROP", EndpointToHost::Drop),
            ("return", EndpointToHost::Return),
            (" Accept ", EndpointToHost::Accept),
        ] {
            assert_eq!(text.parse::<EndpointToHost>(), Ok(action), "{text}");
            assert_eq!(
                action.to_string().parse::<EndpointToHost>(),
                Ok(action),
                "round trip"
            );
        }
        let e = "reject".parse::<EndpointToHost>().unwrap_err();
        assert!(e.contains("expected Drop, Return or Accept"), "{e}");
    }

    #[test]
    fn only_drop_keeps_workloads_out_of_their_host() {
        assert!(!EndpointToHost::Drop.admits());
        assert!(EndpointToHost::Return.admits());
        assert!(EndpointToHost::Accept.admits());
        assert_eq!(
            HostDefaults::default().endpoint_to_host,
            EndpointToHost::Accept
        );
    }
}
