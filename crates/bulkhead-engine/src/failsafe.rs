//! Failsafe ports: what a host endpoint lets through before any policy, so that a wrong
//! policy cannot cut a host off from its control plane (Felix's
//! `FailsafeInboundHostPorts` and `FailsafeOutboundHostPorts`, with Felix's defaults).
//! An entry may name the remote net it is open to: the source of inbound connections,
//! the destination of outbound ones.

use std::fmt;
use std::net::IpAddr;

use bulkhead_api::parse_cidr;
use bulkhead_api::values::Protocol;
use ipnet::IpNet;

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

/// One failsafe port: a protocol and port, open to the remote addresses of `net` (every
/// address when `None`; an IPv4 net opens nothing to IPv6, and the other way round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailsafePort {
    /// TCP, UDP or SCTP.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// The remote net (`None`: every address).
    pub net: Option<IpNet>,
}

impl FailsafePort {
    /// `protocol`/`port`, open to every address.
    pub fn any(protocol: Protocol, port: u16) -> FailsafePort {
        FailsafePort {
            protocol,
            port,
            net: None,
        }
    }

    /// Whether a packet of `protocol` with `port` on the failsafe side, exchanged with
    /// `remote`, is this entry's.
    fn matches(&self, protocol: Protocol, port: Option<u16>, remote: IpAddr) -> bool {
        self.protocol == protocol
            && port == Some(self.port)
            && self.net.is_none_or(|n| n.contains(&remote))
    }
}

/// Felix's spelling: `tcp:22`, or `tcp:10.0.0.0/8:22` with a net.
impl fmt::Display for FailsafePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = self.protocol.to_string().to_ascii_lowercase();
        match self.net {
            Some(net) => write!(f, "{protocol}:{net}:{}", self.port),
            None => write!(f, "{protocol}:{}", self.port),
        }
    }
}

/// The failsafe ports of a node's host endpoints: inbound ones are destination ports of
/// traffic to the host, outbound ones destination ports of traffic from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failsafe {
    /// Allowed into the host before any policy.
    pub inbound: Vec<FailsafePort>,
    /// Allowed out of the host before any policy.
    pub outbound: Vec<FailsafePort>,
}

impl Default for Failsafe {
    fn default() -> Self {
        let any =
            |list: &[(Protocol, u16)]| list.iter().map(|&(p, n)| FailsafePort::any(p, n)).collect();
        Failsafe {
            inbound: any(DEFAULT_INBOUND),
            outbound: any(DEFAULT_OUTBOUND),
        }
    }
}

impl Failsafe {
    /// Parses a port list as Felix's environment takes it: comma-separated `port` (TCP),
    /// `protocol:port` or `protocol:net:port` (protocol `tcp`, `udp` or `sctp`, any case;
    /// port 1–65535; net a CIDR or an address, an IPv6 one optionally in brackets), or
    /// `none` for no port at all.
    pub fn parse_ports(text: &str) -> Result<Vec<FailsafePort>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") || text.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim) {
            let entry = parse_entry(item)?;
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Whether a connection to `port` exchanged with `remote` is a failsafe one: into the
    /// host (`ingress`, inbound ports, `remote` its source) or out of it (outbound ports,
    /// `remote` its destination).
    pub fn allows(
        &self,
        ingress: bool,
        protocol: Protocol,
        port: Option<u16>,
        remote: IpAddr,
    ) -> bool {
        self.entry(ingress, protocol, port, remote).is_some()
    }

    /// The first entry that makes a connection a failsafe one ([`Failsafe::allows`]).
    pub fn entry(
        &self,
        ingress: bool,
        protocol: Protocol,
        port: Option<u16>,
        remote: IpAddr,
    ) -> Option<&FailsafePort> {
        let list = if ingress {
            &self.inbound
        } else {
            &self.outbound
        };
        list.iter().find(|e| e.matches(protocol, port, remote))
    }

    /// Whether the raw table's failsafe rules let a packet from `src` coming in by a host
    /// endpoint by before any untracked policy: to an inbound port (`dst`), or the reply
    /// of a connection to an outbound one (from its port `src_port`).
    pub fn raw_allows(
        &self,
        protocol: Protocol,
        dst: Option<u16>,
        src_port: Option<u16>,
        src: IpAddr,
    ) -> bool {
        self.allows(true, protocol, dst, src) || self.allows(false, protocol, src_port, src)
    }
}

/// A port list in the form [`Failsafe::parse_ports`] reads: `tcp:22,udp:68` or `none`.
pub fn format_ports(ports: &[FailsafePort]) -> String {
    if ports.is_empty() {
        return "none".to_string();
    }
    let items: Vec<String> = ports.iter().map(ToString::to_string).collect();
    items.join(",")
}

/// One entry of a port list ([`Failsafe::parse_ports`]).
fn parse_entry(item: &str) -> Result<FailsafePort, String> {
    let expected =
        || format!("{item:?}: expected port, protocol:port or protocol:net:port, e.g. tcp:22");
    // The protocol is before the first colon, the port after the last; an IPv6 net has
    // colons of its own.
    let (protocol, net, port) = match (item.split_once(':'), item.rsplit_once(':')) {
        (None, _) | (_, None) => ("tcp", None, item),
        (Some((protocol, _)), Some((head, port))) if head == protocol => (protocol, None, port),
        (Some((protocol, rest)), Some((_, port))) => {
            let net = &rest[..rest.len() - port.len() - 1];
            (protocol, Some(net), port)
        }
    };
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::TCP,
        "udp" => Protocol::UDP,
        "sctp" => Protocol::SCTP,
        "" => return Err(expected()),
        _ => {
            return Err(format!(
                "{item:?}: protocol must be tcp, udp or sctp, not {protocol:?}"
            ));
        }
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ if port.is_empty() => return Err(expected()),
        _ => return Err(format!("{item:?}: port must be 1-65535, not {port:?}")),
    };
    let net = net
        .map(|n| {
            let bare = n.trim_start_matches('[').trim_end_matches(']');
            parse_cidr(bare).ok_or_else(|| format!("{item:?}: {n:?} is not a CIDR or address"))
        })
        .transpose()?;
    Ok(FailsafePort {
        protocol,
        port,
        net,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn net(s: &str) -> Option<IpNet> {
        Some(s.parse().expect("test net"))
    }

    #[test]
    fn parses_felix_lists_and_none() {
        assert_eq!(
            Failsafe::parse_ports("tcp:22, UDP:68,tcp:22, 2222"),
            Ok(vec![
                FailsafePort::any(Protocol::TCP, 22),
                FailsafePort::any(Protocol::UDP, 68),
                FailsafePort::any(Protocol::TCP, 2222),
            ])
        );
        assert_eq!(Failsafe::parse_ports("none"), Ok(vec![]));
        assert_eq!(
            Failsafe::parse_ports("sctp:9"),
            Ok(vec![FailsafePort::any(Protocol::SCTP, 9)])
        );
        let with_nets = Failsafe::parse_ports(
            "tcp:10.0.0.0/8:22,udp:[fd00::/8]:53,tcp:fd00::/8:179,tcp:192.0.2.1:6443",
        )
        .expect("valid");
        let nets: Vec<_> = with_nets.iter().map(|e| (e.port, e.net)).collect();
        assert_eq!(
            nets,
            [
                (22, net("10.0.0.0/8")),
                (53, net("fd00::/8")),
                (179, net("fd00::/8")),
                (6443, net("192.0.2.1/32")),
            ]
        );
        assert_eq!(with_nets[0].to_string(), "tcp:10.0.0.0/8:22");
        let text = format_ports(&with_nets);
        assert_eq!(Failsafe::parse_ports(&text), Ok(with_nets), "{text}");
        assert_eq!(format_ports(&[]), "none");
    }

    #[test]
    fn refuses_what_it_cannot_enforce_and_says_why() {
        for (text, says) in [
            ("tcp:10.0.0.0/33:22", "not a CIDR or address"),
            ("icmp:8", "protocol must be tcp, udp or sctp"),
            ("tcp:0", "port must be 1-65535"),
            ("tcp:70000", "port must be 1-65535"),
            ("tcp:", "expected port, protocol:port"),
            (":22", "expected port, protocol:port"),
        ] {
            let e = Failsafe::parse_ports(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_net_opens_the_port_to_its_addresses_only() {
        let f = Failsafe {
            inbound: Failsafe::parse_ports("tcp:10.0.0.0/8:22").expect("valid"),
            outbound: Failsafe::parse_ports("udp:[fd00::/8]:53").expect("valid"),
        };
        assert!(f.allows(true, Protocol::TCP, Some(22), ip("10.1.2.3")));
        assert!(!f.allows(true, Protocol::TCP, Some(22), ip("198.18.0.1")));
        assert!(!f.allows(true, Protocol::TCP, Some(22), ip("fd00::1")));
        assert!(f.allows(false, Protocol::UDP, Some(53), ip("fd00::53")));
        assert!(!f.allows(false, Protocol::UDP, Some(53), ip("10.0.0.53")));
    }

    #[test]
    fn the_raw_table_lets_inbound_ports_and_replies_of_outbound_ones_by() {
        let f = Failsafe::default();
        let from = ip("198.18.0.1");
        assert!(f.raw_allows(Protocol::TCP, Some(22), None, from));
        assert!(f.raw_allows(Protocol::UDP, None, Some(53), from));
        assert!(!f.raw_allows(Protocol::UDP, Some(22), None, from));
        assert!(!f.raw_allows(Protocol::TCP, Some(80), Some(40000), from));
        let dns_in_net = Failsafe {
            inbound: Vec::new(),
            outbound: Failsafe::parse_ports("udp:10.0.0.0/8:53").expect("valid"),
        };
        assert!(dns_in_net.raw_allows(Protocol::UDP, Some(40000), Some(53), ip("10.0.0.53")));
        assert!(!dns_in_net.raw_allows(Protocol::UDP, Some(40000), Some(53), from));
    }
}
