//! Failsafe ports: what a host endpoint lets through before any policy, so that a wrong
//! policy cannot cut a host off from its control plane (Felix's
//! `FailsafeInboundHostPorts` and `FailsafeOutboundHostPorts`, with Felix's defaults).

use bulkhead_api::values::Protocol;

/// Felix's default inbound failsafe ports.
pub const DEFAULT_INBOUND: &[(Protocol, u16)] = &[
    (Protocol::TCP, 22),
    (Protocol::UDP, 68),
    (Protocol::TCP, 179),
    (Protocol::TCP, 2379),
    (Protocol::TCP, 2380),
    (Protocol::TCP, 5473),
    (Protocol::TCP, 6443),
    (Protocol::TCP, 6666),
    (Protocol::TCP, 6667),
];

/// Felix's default outbound failsafe ports.
pub const DEFAULT_OUTBOUND: &[(Protocol, u16)] = &[
    (Protocol::UDP, 53),
    (Protocol::UDP, 67),
    (Protocol::TCP, 179),
    (Protocol::TCP, 2379),
    (Protocol::TCP, 2380),
    (Protocol::TCP, 5473),
    (Protocol::TCP, 6443),
    (Protocol::TCP, 6666),
    (Protocol::TCP, 6667),
];

/// The failsafe ports of a node's host endpoints: inbound ones are destination ports of
/// traffic to the host, outbound ones destination ports of traffic from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failsafe {
    /// Allowed into the host before any policy.
    pub inbound: Vec<(Protocol, u16)>,
    /// Allowed out of the host before any policy.
    pub outbound: Vec<(Protocol, u16)>,
}

impl Default for Failsafe {
    fn default() -> Self {
        Failsafe {
            inbound: DEFAULT_INBOUND.to_vec(),
            outbound: DEFAULT_OUTBOUND.to_vec(),
        }
    }
}

impl Failsafe {
    /// Parses a port list as Felix's environment takes it: `tcp:22,udp:68` (protocol
    /// `tcp`, `udp` or `sctp`, any case; port 1–65535), or `none` for no port at all.
    /// Felix's `proto:net:port` form (a source or destination net) is refused, as
    /// Bulkhead has no per-net failsafe rules.
    pub fn parse_ports(text: &str) -> Result<Vec<(Protocol, u16)>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") || text.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim) {
            let mut parts = item.split(':');
            let (Some(proto), Some(port), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!(
                    "{item:?}: expected protocol:port, e.g. tcp:22 (a net between them is not supported)"
                ));
            };
            let protocol = match proto.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::TCP,
                "udp" => Protocol::UDP,
                "sctp" => Protocol::SCTP,
                _ => {
                    return Err(format!(
                        "{item:?}: protocol must be tcp, udp or sctp, not {proto:?}"
                    ));
                }
            };
            let port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{item:?}: port must be 1-65535, not {port:?}")),
            };
            if !out.contains(&(protocol, port)) {
                out.push((protocol, port));
            }
        }
        Ok(out)
    }

    /// Whether a connection to `port` is a failsafe one: into the host (`ingress`,
    /// inbound ports) or out of it (outbound ports).
    pub fn allows(&self, ingress: bool, protocol: Protocol, port: Option<u16>) -> bool {
        let list = if ingress {
            &self.inbound
        } else {
            &self.outbound
        };
        port.is_some_and(|p| list.contains(&(protocol, p)))
    }

    /// Whether the raw table's failsafe rules let a packet coming in by a host endpoint
    /// by before any untracked policy: to an inbound port, or the reply of a connection
    /// to an outbound one (`src`).
    pub fn raw_allows(&self, protocol: Protocol, dst: Option<u16>, src: Option<u16>) -> bool {
        self.allows(true, protocol, dst) || self.allows(false, protocol, src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_felix_lists_and_none() {
        assert_eq!(
            Failsafe::parse_ports("tcp:22, UDP:68,tcp:22"),
            Ok(vec![(Protocol::TCP, 22), (Protocol::UDP, 68)])
        );
        assert_eq!(Failsafe::parse_ports("none"), Ok(vec![]));
        assert_eq!(
            Failsafe::parse_ports("sctp:9"),
            Ok(vec![(Protocol::SCTP, 9)])
        );
    }

    #[test]
    fn refuses_what_it_cannot_enforce_and_says_why() {
        for (text, says) in [
            ("tcp:0.0.0.0/0:22", "not supported"),
            ("icmp:8", "protocol must be tcp, udp or sctp"),
            ("tcp:0", "port must be 1-65535"),
            ("tcp:70000", "port must be 1-65535"),
            ("tcp", "expected protocol:port"),
        ] {
            let e = Failsafe::parse_ports(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_raw_table_lets_inbound_ports_and_replies_of_outbound_ones_by() {
        let f = Failsafe::default();
        assert!(f.raw_allows(Protocol::TCP, Some(22), None));
        assert!(f.raw_allows(Protocol::UDP, None, Some(53)));
        assert!(!f.raw_allows(Protocol::UDP, Some(22), None));
        assert!(!f.raw_allows(Protocol::TCP, Some(80), Some(40000)));
    }
}
