//! A flow: the first packet of a connection, as the policy sees it.

use std::fmt;
use std::net::IpAddr;

use bulkhead_api::values::Protocol;

/// One connection attempt between two addresses.
///
/// Endpoints are found by address: an address that belongs to no workload or host endpoint
/// is "external", and only the endpoint side(s) of the flow have policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub protocol: Protocol,
    /// Source port, when known (`None` never matches a rule's source `ports`).
    pub src_port: Option<u16>,
    /// Destination port (`None` for protocols without ports).
    pub dst_port: Option<u16>,
    /// ICMP type and code, for ICMP/ICMPv6 flows.
    pub icmp: Option<(u8, u8)>,
}

impl Flow {
    /// A TCP connection to `port`.
    pub fn tcp(src: IpAddr, dst: IpAddr, port: u16) -> Flow {
        Flow::with_port(src, dst, Protocol::TCP, port)
    }

    /// A flow of a port-carrying protocol to `port`.
    pub fn with_port(src: IpAddr, dst: IpAddr, protocol: Protocol, port: u16) -> Flow {
        Flow {
            src,
            dst,
            protocol,
            src_port: None,
            dst_port: Some(port),
            icmp: None,
        }
    }

    /// An echo request (ICMP type 8, or ICMPv6 type 128 for IPv6 addresses).
    pub fn echo_request(src: IpAddr, dst: IpAddr) -> Flow {
        let (protocol, icmp_type) = if dst.is_ipv6() {
            (Protocol::ICMPV6, 128)
        } else {
            (Protocol::ICMP, 8)
        };
        Flow {
            src,
            dst,
            protocol,
            src_port: None,
            dst_port: None,
            icmp: Some((icmp_type, 0)),
        }
    }

    /// The first packet of the answer: addresses and ports swapped (an unknown source
    /// port, the client's ephemeral one, stays unknown and so matches no rule's `ports`);
    /// an echo request's answer is an echo reply (ICMP type 0, ICMPv6 type 129).
    pub fn reply(&self) -> Flow {
        let icmp = self.icmp.map(|(t, c)| match t {
            8 => (0, c),
            128 => (129, c),
            other => (other, c),
        });
        Flow {
            src: self.dst,
            dst: self.src,
            protocol: self.protocol,
            src_port: self.dst_port,
            dst_port: self.src_port,
            icmp,
        }
    }

    /// 4 or 6.
    pub fn ip_version(&self) -> u8 {
        if self.dst.is_ipv6() { 6 } else { 4 }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} {}", self.src, self.dst, self.protocol)?;
        if let Some(p) = self.dst_port {
            write!(f, "/{p}")?;
        }
        if let Some((t, c)) = self.icmp {
            write!(f, " type {t} code {c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_swaps_ends_and_ports_and_answers_an_echo() {
        let (a, b) = ("10.65.0.1".parse().unwrap(), "10.66.0.1".parse().unwrap());
        let reply = Flow::tcp(a, b, 80).reply();
        assert_eq!((reply.src, reply.dst), (b, a));
        assert_eq!((reply.src_port, reply.dst_port), (Some(80), None));
        assert_eq!(Flow::echo_request(a, b).reply().icmp, Some((0, 0)));
        let (a6, b6) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        assert_eq!(Flow::echo_request(a6, b6).reply().icmp, Some((129, 0)));
    }
}
