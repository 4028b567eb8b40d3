//! Topologies: veth pairs, and the node sandbox (a routing node namespace with one veth
//! per workload, host or external namespace).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::netns::{Netns, lock, sanitize};

/// The on-link gateway every endpoint routes through: an address of the node namespace
/// (on its `lo`), answered by ARP on every endpoint link. Calico uses the same address.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The MAC address of every node-side endpoint interface, as Calico sets it.
pub const GATEWAY_MAC: &str = "ee:ee:ee:ee:ee:ee";

/// The IPv6 gateway of every endpoint: the link-local address that [`GATEWAY_MAC`] gives
/// the node-side interface (EUI-64).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// The name of the endpoint-side interface in every endpoint namespace.
pub const ENDPOINT_IFNAME: &str = "eth0";

/// Sysctls of a node namespace: it routes. Conntrack accounting and timestamps stay off
/// (the kernel's default): nothing reads them, and they cost every tracked packet.
const NODE_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
];

/// An address with a prefix length, e.g. `10.65.0.1/32` or `fd65::1/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// `addr/prefix_len`; the length must fit the family (≤ 32 or ≤ 128). Host bits may be
    /// set (an interface address); [`Cidr::network`] clears them.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(Error::invalid(
                "prefix length",
                format!("{addr}/{prefix_len}: at most {max}"),
            ));
        }
        Ok(Cidr { addr, prefix_len })
    }

    /// The single address `addr` (/32 or /128).
    pub fn host(addr: IpAddr) -> Cidr {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix_len }
    }

    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The same prefix with the host bits cleared.
    pub fn network(&self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Cidr { addr, ..*self }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = Error;

    /// `ADDR/LEN`, or a bare address meaning a single host.
    fn from_str(s: &str) -> Result<Cidr> {
        let bad = || Error::invalid("CIDR", s.to_owned());
        match s.split_once('/') {
            None => Ok(Cidr::host(s.parse().map_err(|_| bad())?)),
            Some((addr, len)) => Cidr::new(
                addr.parse().map_err(|_| bad())?,
                len.parse().map_err(|_| bad())?,
            ),
        }
    }
}

impl From<IpAddr> for Cidr {
    fn from(addr: IpAddr) -> Cidr {
        Cidr::host(addr)
    }
}

/// A route through one end of a veth pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The destination prefix (`0.0.0.0/0` or `::/0` for a default route).
    pub dest: Cidr,
    /// The next hop; `None` for a route straight onto the link.
    pub via: Option<IpAddr>,
}

/// One end of a veth pair for [`veth_pair`].
#[derive(Clone, Debug)]
pub struct VethEnd<'a> {
    /// The namespace this end lives in.
    pub netns: &'a Netns,
    /// The interface name (at most 15 bytes).
    pub ifname: String,
    /// A MAC address to set, e.g. [`GATEWAY_MAC`]; random when `None`.
    pub mac: Option<String>,
    /// Addresses to add (IPv6 ones without duplicate address detection).
    pub addresses: Vec<Cidr>,
    /// Routes to add through this interface, after both ends are up and addressed.
    pub routes: Vec<Route>,
}

impl<'a> VethEnd<'a> {
    /// An end named `ifname` in `netns`, without addresses or routes.
    pub fn new(netns: &'a Netns, ifname: &str) -> Self {
        VethEnd {
            netns,
            ifname: ifname.to_owned(),
            mac: None,
            addresses: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// Adds an address.
    pub fn address(mut self, cidr: Cidr) -> Self {
        self.addresses.push(cidr);
        self
    }

    /// Adds a route to `dest`, through `via` or straight onto the link.
    pub fn route(mut self, dest: Cidr, via: Option<IpAddr>) -> Self {
        self.routes.push(Route { dest, via });
        self
    }

    /// Sets the MAC address.
    pub fn mac(mut self, mac: &str) -> Self {
        self.mac = Some(mac.to_owned());
        self
    }

    fn link_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(mac) = &self.mac {
            lines.push(format!("link set dev {} address {mac}", self.ifname));
        }
        lines.push(format!("link set dev {} up", self.ifname));
        for a in &self.addresses {
            lines.push(addr_line(*a, &self.ifname));
        }
        lines
    }

    fn route_lines(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| route_line(r.dest, r.via, &self.ifname))
            .collect()
    }
}

/// Creates a veth pair with one end in each namespace (never in the root namespace:
/// `ip -n A link add … peer … netns B`), brings both up, adds their addresses, then their
/// routes. The pair lives until either namespace is deleted.
pub fn veth_pair(a: &VethEnd<'_>, b: &VethEnd<'_>) -> Result<()> {
    validate_ifname(&a.ifname)?;
    validate_ifname(&b.ifname)?;
    for end in [a, b] {
        if let Some(mac) = &end.mac {
            validate_mac(mac)?;
        }
    }
    a.netns.ip([
        "link",
        "add",
        &a.ifname,
        "type",
        "veth",
        "peer",
        "name",
        &b.ifname,
        "netns",
        b.netns.name(),
    ])?;
    a.netns.ip_batch(&a.link_lines())?;
    b.netns.ip_batch(&b.link_lines())?;
    a.netns.ip_batch(&a.route_lines())?;
    b.netns.ip_batch(&b.route_lines())?;
    Ok(())
}

/// What an endpoint namespace stands for; decides the node-side interface name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    /// A pod: node side `cali<hash>`, like Calico.
    Workload,
    /// Another host (e.g. a node in 10.66.0.0/16): node side `hst<hash>`.
    Host,
    /// Something outside the cluster (e.g. 198.18.0.0/15): node side `ext<hash>`.
    External,
}

impl EndpointKind {
    fn prefix(self) -> &'static str {
        match self {
            EndpointKind::Workload => "cali",
            EndpointKind::Host => "hst",
            EndpointKind::External => "ext",
        }
    }
}

/// The node-side interface name for endpoint `id` of `kind`: the kind's prefix (`cali`,
/// `hst`, `ext`) and the first 11 hex digits of the 64-bit FNV-1a hash of `id`. Stable
/// across runs and processes, at most 15 bytes (Linux's limit).
pub fn host_ifname(kind: EndpointKind, id: &str) -> String {
    format!("{}{}", kind.prefix(), hash11(id))
}

/// Node `from`'s end of its link to node `to` ([`crate::persistent::link_nodes`]): `lnk`
/// and 11 hex digits of the FNV-1a hash of `from>to`, like [`host_ifname`].
pub fn link_ifname(from: &str, to: &str) -> String {
    format!("{LINK_PREFIX}{}", hash11(&format!("{from}>{to}")))
}

/// Prefix of the interfaces that link two nodes ([`link_ifname`]).
pub const LINK_PREFIX: &str = "lnk";

/// The first 11 hex digits of the 64-bit FNV-1a hash of `id`.
fn hash11(id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let hex = format!("{h:016x}");
    hex[..11].to_string()
}

/// A node namespace acting as a router, with endpoint namespaces hanging off it.
///
/// ```text
///  endpoint ns "<node>-<id>"                  node ns "<node>"
///  eth0 10.65.0.1/32, fd65::1/128   veth      cali<hash> (mac ee:ee:ee:ee:ee:ee)
///  default via 169.254.1.1  ─────────────────  route 10.65.0.1/32, fd65::1/128 dev cali<hash>
///  ::/0 via fe80::ecee:eeff:feee:eeee          lo: 169.254.1.1/32; forwarding on
/// ```
///
/// Every endpoint reaches every other one, and the node itself, through the node: packets
/// between endpoints cross the node's FORWARD hook, where nftables filters them. The
/// node's own addresses ([`NodeSandbox::add_local_address`]) are reached through INPUT.
#[derive(Debug)]
pub struct NodeSandbox {
    netns: Netns,
    used: Mutex<HashSet<String>>,
}

impl NodeSandbox {
    /// Creates the node namespace `name` (see [`unique_name`](crate::unique_name)),
    /// turns forwarding on (IPv4 and IPv6), and gives it the gateway address
    /// [`GATEWAY_V4`] on `lo`.
    pub fn new(name: &str) -> Result<NodeSandbox> {
        let netns = Netns::create(name)?;
        netns.sysctl(NODE_SYSCTLS)?;
        netns.ip_batch(&[addr_line(Cidr::host(GATEWAY_V4.into()), "lo")])?;
        Ok(NodeSandbox {
            netns,
            used: Mutex::new(HashSet::new()),
        })
    }

    /// The node namespace (apply nftables here; probe from here to test INPUT/OUTPUT).
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The node namespace's name; endpoint namespaces are named `<name>-<id>`.
    pub fn name(&self) -> &str {
        self.netns.name()
    }

    /// Adds a workload (pod) namespace `<node>-<id>` attached by a veth whose node side
    /// is [`host_ifname`]`(Workload, id)`.
    pub fn add_workload(
        &self,
        id: &str,
        ipv4: Ipv4Addr,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<Endpoint> {
        self.add_peer(EndpointKind::Workload, id, ipv4, ipv6)
    }

    /// Adds an endpoint namespace of any kind (a host or an external peer), attached
    /// exactly like a workload, so its traffic to workloads crosses the node too.
    ///
    /// `id` is reduced to `[A-Za-z0-9_.-]` and must be unique in the sandbox. Addresses
    /// must be unicast and not link-local; nothing else is checked (pods are 10.65.0.0/16,
    /// hosts 10.66.0.0/16, externals 198.18.0.0/15 by convention).
    pub fn add_peer(
        &self,
        kind: EndpointKind,
        id: &str,
        ipv4: Ipv4Addr,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<Endpoint> {
        let id = sanitize(id, 64);
        if id.is_empty() {
            return Err(Error::invalid("endpoint id", "empty"));
        }
        check_endpoint_addr(ipv4.into())?;
        if let Some(v6) = ipv6 {
            check_endpoint_addr(v6.into())?;
        }
        let host_if = host_ifname(kind, &id);
        {
            let mut used = lock(&self.used);
            if used.contains(&id) || used.contains(&host_if) {
                return Err(Error::invalid(
                    "endpoint id",
                    format!("{id} is already used in sandbox {}", self.name()),
                ));
            }
            used.insert(id.clone());
            used.insert(host_if.clone());
        }
        let created = self.attach(kind, &id, &host_if, ipv4, ipv6);
        if created.is_err() {
            let mut used = lock(&self.used);
            used.remove(&id);
            used.remove(&host_if);
        }
        created
    }

    fn attach(
        &self,
        kind: EndpointKind,
        id: &str,
        host_if: &str,
        ipv4: Ipv4Addr,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<Endpoint> {
        let netns = Netns::create(&format!("{}-{id}", self.name()))?;
        let mut node_end = VethEnd::new(&self.netns, host_if)
            .mac(GATEWAY_MAC)
            .route(Cidr::host(ipv4.into()), None);
        let mut ep_end = VethEnd::new(&netns, ENDPOINT_IFNAME)
            .address(Cidr::host(ipv4.into()))
            .route(Cidr::host(GATEWAY_V4.into()), None)
            .route(
                Cidr::new(Ipv4Addr::UNSPECIFIED.into(), 0)?,
                Some(GATEWAY_V4.into()),
            );
        if let Some(v6) = ipv6 {
            node_end = node_end.route(Cidr::host(v6.into()), None);
            ep_end = ep_end.address(Cidr::host(v6.into())).route(
                Cidr::new(Ipv6Addr::UNSPECIFIED.into(), 0)?,
                Some(GATEWAY_V6.into()),
            );
        }
        veth_pair(&node_end, &ep_end)?;
        tracing::debug!(node = %self.name(), endpoint = %netns.name(), host_if, %ipv4, ?ipv6, "attached");
        Ok(Endpoint {
            netns,
            kind,
            id: id.to_owned(),
            node: self.name().to_owned(),
            host_ifname: host_if.to_owned(),
            ipv4,
            ipv6,
            extra: Mutex::new(Vec::new()),
        })
    }

    /// Gives `endpoint` another address (/32 or /128 on its `eth0`, with the node's host
    /// route to it), e.g. to probe from several external addresses out of one namespace
    /// ([`Probe::with_source`](crate::Probe::with_source)).
    pub fn add_endpoint_address(&self, endpoint: &Endpoint, addr: IpAddr) -> Result<()> {
        if endpoint.node != self.name() {
            return Err(Error::invalid(
                "endpoint",
                format!(
                    "{} is not attached to {}",
                    endpoint.netns.name(),
                    self.name()
                ),
            ));
        }
        check_endpoint_addr(addr)?;
        self.netns
            .ip_batch(&[route_line(Cidr::host(addr), None, &endpoint.host_ifname)])?;
        endpoint
            .netns
            .ip_batch(&[addr_line(Cidr::host(addr), ENDPOINT_IFNAME)])?;
        lock(&endpoint.extra).push(addr);
        Ok(())
    }

    /// Gives the node namespace an address of its own (on `lo`), reachable from every
    /// endpoint through the node's INPUT hook.
    pub fn add_local_address(&self, addr: IpAddr) -> Result<()> {
        check_endpoint_addr(addr)?;
        self.netns.ip_batch(&[addr_line(Cidr::host(addr), "lo")])
    }
}

/// A workload, host or external namespace attached to a [`NodeSandbox`]. Dropping it
/// deletes its namespace, which removes the veth and the node's routes to it.
#[derive(Debug)]
pub struct Endpoint {
    netns: Netns,
    kind: EndpointKind,
    id: String,
    node: String,
    host_ifname: String,
    ipv4: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
    extra: Mutex<Vec<IpAddr>>,
}

impl Endpoint {
    /// The endpoint's namespace (serve, probe from, run code in it).
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// What it stands for.
    pub fn kind(&self) -> EndpointKind {
        self.kind
    }

    /// Its id in the sandbox.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name of the node namespace it is attached to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node-side interface name (`cali…`, `hst…`, `ext…`).
    pub fn host_ifname(&self) -> &str {
        &self.host_ifname
    }

    /// Its IPv4 address.
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// Its IPv6 address, if it has one.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6
    }

    /// Every address: IPv4, IPv6, then those added later.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut all = vec![IpAddr::V4(self.ipv4)];
        all.extend(self.ipv6.map(IpAddr::V6));
        all.extend(lock(&self.extra).iter().copied());
        all
    }
}

impl AsRef<Netns> for Endpoint {
    fn as_ref(&self) -> &Netns {
        &self.netns
    }
}

impl AsRef<Netns> for NodeSandbox {
    fn as_ref(&self) -> &Netns {
        &self.netns
    }
}

fn addr_line(cidr: Cidr, ifname: &str) -> String {
    match cidr.addr {
        IpAddr::V4(_) => format!("address add {cidr} dev {ifname}"),
        IpAddr::V6(_) => format!("address add {cidr} dev {ifname} nodad"),
    }
}

fn route_line(dest: Cidr, via: Option<IpAddr>, ifname: &str) -> String {
    // `ip -batch` takes no per-line `-4`/`-6`; the family follows from the prefix, which
    // is always written out (`0.0.0.0/0`, `::/0`, never `default`).
    match via {
        Some(via) => format!("route add {} via {via} dev {ifname}", dest.network()),
        None => format!("route add {} dev {ifname}", dest.network()),
    }
}

fn check_endpoint_addr(addr: IpAddr) -> Result<()> {
    let bad = match addr {
        IpAddr::V4(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_link_local()
        }
        IpAddr::V6(a) => {
            a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local()
        }
    };
    if bad {
        Err(Error::invalid(
            "endpoint address",
            format!("{addr}: must be unicast, not loopback or link-local"),
        ))
    } else {
        Ok(())
    }
}

fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "interface name",
            format!("{name:?}: 1-15 printable bytes without '/' or ':'"),
        ))
    }
}

fn validate_mac(mac: &str) -> Result<()> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("MAC address", mac.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifnames_are_stable_and_short() {
        let a = host_ifname(EndpointKind::Workload, "default.frontend-1");
        assert_eq!(a, host_ifname(EndpointKind::Workload, "default.frontend-1"));
        assert!(a.starts_with("cali") && a.len() == 15, "{a}");
        assert!(host_ifname(EndpointKind::Host, "h").starts_with("hst"));
        assert!(host_ifname(EndpointKind::External, "x").len() <= 15);
        assert_ne!(a, host_ifname(EndpointKind::Workload, "default.frontend-2"));
        assert!(validate_ifname(&a).is_ok());
        assert!(validate_ifname("sixteen-chars-xx").is_err());
        assert!(validate_ifname("a/b").is_err());
        let link = link_ifname("node-one", "node-two");
        assert!(link.starts_with(LINK_PREFIX) && link.len() == 14, "{link}");
        assert_ne!(
            link,
            link_ifname("node-two", "node-one"),
            "one name per end"
        );
        assert!(validate_ifname(&link).is_ok());
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.65.3.7/16".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.65.0.0/16");
        assert_eq!(
            "fd65::1".parse::<Cidr>().unwrap().to_string(),
            "fd65::1/128"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().network().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            "::/0".parse::<Cidr>().unwrap().network().to_string(),
            "::/0"
        );
        assert!("10.0.0.1/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn lines() {
        let v6 = Cidr::host("fd65::1".parse().unwrap());
        assert_eq!(
            addr_line(v6, "eth0"),
            "address add fd65::1/128 dev eth0 nodad"
        );
        assert_eq!(
            route_line("::/0".parse().unwrap(), Some(GATEWAY_V6.into()), "eth0"),
            "route add ::/0 via fe80::ecee:eeff:feee:eeee dev eth0"
        );
        assert!(check_endpoint_addr("169.254.1.1".parse().unwrap()).is_err());
        assert!(check_endpoint_addr("10.65.0.1".parse().unwrap()).is_ok());
        assert!(validate_mac(GATEWAY_MAC).is_ok());
        assert!(validate_mac("ee:ee").is_err());
    }
}
