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
