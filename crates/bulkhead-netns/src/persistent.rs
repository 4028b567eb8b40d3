//! Plumbing that outlives the process: node namespaces, the links between them and
//! workload veths created by the `bulkhead node` and `bulkhead workload` commands and by
//! the CNI plugin.
//!
//! Unlike [`Netns`](crate::Netns) and [`NodeSandbox`](crate::NodeSandbox), nothing here is
//! deleted on drop: a container runtime calls the CNI plugin once to attach a workload
//! and once more to detach it. The wiring is the same as a sandbox's (see
//! `docs/netns.md`): the node owns the gateway 169.254.1.1 on `lo` and answers for it; the
//! workload's `eth0` has a /32 (and /128) with a default route via the gateway; the
//! node side of the veth carries the gateway MAC and a host route to the workload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};
use crate::topology::{Cidr, GATEWAY_MAC, GATEWAY_V4, GATEWAY_V6, LINK_PREFIX, link_ifname};

/// Runs a command and fails with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = cmd::checked(Command::new(program).args(args), None)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the named namespace exists (`/run/netns/NAME`).
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Creates a node namespace that stays until [`delete_node`]: `lo` up, the gateway
/// address on `lo`, forwarding on, IPv6 duplicate address detection off.
pub fn create_node(name: &str) -> Result<()> {
    if netns_exists(name) {
        return Err(Error::invalid(
            "node",
            format!("namespace {name} already exists"),
        ));
    }
    run("ip", &["netns", "add", name])?;
    let setup = || -> Result<()> {
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "-n",
                name,
                "addr",
                "add",
                &format!("{GATEWAY_V4}/32"),
                "dev",
                "lo",
            ],
        )?;
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv6.conf.all.forwarding", "1"),
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
        ] {
            run(
                "ip",
                &["netns", "exec", name, "sysctl", "-qw", &format!("{k}={v}")],
            )?;
        }
        Ok(())
    };
    setup().inspect_err(|_| {
        let _ = run("ip", &["netns", "del", name]);
    })
}

/// Deletes a node namespace (its veths go with it).
pub fn delete_node(name: &str) -> Result<()> {
    run("ip", &["netns", "del", name]).map(|_| ())
}

/// The node-side interfaces of the workloads attached to a node (its veths but the links
/// to other nodes), by name.
pub fn attached_workloads(node: &str) -> Result<Vec<String>> {
    let text = run("ip", &["-n", node, "-o", "link", "show", "type", "veth"])?;
    Ok(veth_names(&text)
        .into_iter()
        .filter(|name| !name.starts_with(LINK_PREFIX))
        .collect())
}

/// Two nodes to link ([`link_nodes`]).
#[derive(Debug, Clone)]
pub struct NodeLink<'a> {
    /// One node namespace.
    pub a: &'a str,
    /// The other.
    pub b: &'a str,
    /// The link's IPv4 network, /30 or wider: `a` gets its first address, `b` the second.
    pub net: Cidr,
    /// Networks `a` reaches through `b` (for instance `b`'s workloads).
    pub a_routes: &'a [Cidr],
    /// Networks `b` reaches through `a`.
    pub b_routes: &'a [Cidr],
}

/// Links two node namespaces with a veth pair ([`link_ifname`] on each side), addresses
/// from `net` and the routes each side asks for; returns the two interface names (`a`'s
/// first). They are host interfaces: a HostEndpoint may name them. Nothing is left behind
/// on failure.
pub fn link_nodes(l: &NodeLink<'_>) -> Result<(String, String)> {
    for node in [l.a, l.b] {
        if !netns_exists(node) {
            return Err(Error::invalid("node", format!("no node namespace {node}")));
        }
    }
    if l.a == l.b {
        return Err(Error::invalid("link", "a node cannot be linked to itself"));
    }
    let IpAddr::V4(net) = l.net.network().addr() else {
        return Err(Error::invalid(
            "link network",
            format!("{}: IPv4 only", l.net),
        ));
    };
    if l.net.prefix_len() > 30 {
        return Err(Error::invalid(
            "link network",
            format!("{}: needs two addresses, so /30 or wider", l.net),
        ));
    }
    for route in l.a_routes.iter().chain(l.b_routes) {
        if !route.addr().is_ipv4() {
            return Err(Error::invalid("route", format!("{route}: IPv4 only")));
        }
    }
    let base = u32::from(net);
    let addr = |n: u32| Cidr::new(IpAddr::V4(Ipv4Addr::from(base + n)), l.net.prefix_len());
    let (addr_a, addr_b) = (addr(1)?, addr(2)?);
    let (if_a, if_b) = (link_ifname(l.a, l.b), link_ifname(l.b, l.a));
    if run("ip", &["-n", l.a, "link", "show", &if_a]).is_ok() {
        return Err(Error::invalid(
            "link",
            format!("{} and {} are already linked ({if_a})", l.a, l.b),
        ));
    }
    run(
        "ip",
        &[
            "-n", l.a, "link", "add", &if_a, "type", "veth", "peer", "name", &if_b, "netns", l.b,
        ],
    )?;
    let wire = || -> Result<()> {
        for (node, ifname, own, peer, routes) in [
            (l.a, &if_a, addr_a, addr_b, l.a_routes),
            (l.b, &if_b, addr_b, addr_a, l.b_routes),
        ] {
            run(
                "ip",
                &["-n", node, "addr", "add", &own.to_string(), "dev", ifname],
            )?;
            run("ip", &["-n", node, "link", "set", ifname, "up"])?;
            let via = peer.addr().to_string();
            for route in routes {
                run(
                    "ip",
                    &[
                        "-n",
                        node,
                        "route",
                        "add",
                        &route.network().to_string(),
                        "via",
                        &via,
                    ],
                )?;
            }
        }
        Ok(())
    };
    wire().inspect_err(|_| {
        let _ = run("ip", &["-n", l.a, "link", "del", &if_a]);
    })?;
    Ok((if_a, if_b))
}

/// Interface names from `ip -o link` lines: `3: NAME@if2: <...> ...`.
fn veth_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let name = line.split(": ").nth(1)?;
            Some(name.split('@').next().unwrap_or(name).to_string())
        })
        .collect()
}

/// A workload to attach to a node.
#[derive(Debug, Clone)]
pub struct WorkloadAttach<'a> {
    /// The workload's network namespace: a name under `/run/netns` or a path
    /// (`/proc/PID/ns/net`, as a CNI runtime passes it).
    pub netns: &'a str,
    /// Interface name inside the workload (`eth0`).
    pub ifname: &'a str,
    /// The node namespace's name.
    pub node: &'a str,
    /// The node-side interface name.
    pub host_ifname: &'a str,
    /// IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
}

fn netns_path(netns: &str) -> String {
    if netns.contains('/') {
        netns.to_string()
    } else {
        format!("/run/netns/{netns}")
    }
}

/// Creates the veth pair and addresses and routes on both sides. On failure, whatever
/// was created is removed again.
pub fn attach_workload(w: &WorkloadAttach<'_>) -> Result<()> {
    if w.ipv4.is_none() && w.ipv6.is_none() {
        return Err(Error::invalid("workload", "needs an IPv4 or IPv6 address"));
    }
    if !netns_exists(w.node) {
        return Err(Error::invalid(
            "node",
            format!("no node namespace {}", w.node),
        ));
    }
    for (ip, prefix, family) in [
        (w.ipv4.map(IpAddr::V4), 32, "-4"),
        (w.ipv6.map(IpAddr::V6), 128, "-6"),
    ] {
        let Some(ip) = ip else { continue };
        let route = run(
            "ip",
            &[
                "-n",
                w.node,
                family,
                "route",
                "show",
                &format!("{ip}/{prefix}"),
            ],
        )?;
        if let Some(dev) = route.split_whitespace().skip_while(|w| *w != "dev").nth(1) {
            return Err(Error::invalid(
                "address",
                format!(
                    "{ip} is already in use on node {} (routed to {dev})",
                    w.node
                ),
            ));
        }
    }
    let net = format!("--net={}", netns_path(w.netns));
    let inside = |args: &[&str]| -> Result<String> {
        let mut all = vec![net.as_str(), "--", "ip"];
        all.extend_from_slice(args);
        run("nsenter", &all)
    };
    inside(&[
        "link",
        "add",
        w.ifname,
        "type",
        "veth",
        "peer",
        "name",
        w.host_ifname,
        "netns",
        w.node,
    ])?;
    let node = |args: &[&str]| -> Result<String> {
        let mut all = vec!["-n", w.node];
        all.extend_from_slice(args);
        run("ip", &all)
    };
    let wire = || -> Result<()> {
        node(&["link", "set", w.host_ifname, "address", GATEWAY_MAC, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["link", "set", w.ifname, "up"])?;
        if let Some(v4) = w.ipv4 {
            inside(&["addr", "add", &format!("{v4}/32"), "dev", w.ifname])?;
            inside(&[
                "route",
                "add",
                &format!("{GATEWAY_V4}/32"),
                "dev",
                w.ifname,
                "scope",
                "link",
            ])?;
            inside(&[
                "route",
                "add",
                "default",
                "via",
                &GATEWAY_V4.to_string(),
                "dev",
                w.ifname,
            ])?;
            node(&["route", "add", &format!("{v4}/32"), "dev", w.host_ifname])?;
        }
        if let Some(v6) = w.ipv6 {
            inside(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/128"),
                "dev",
                w.ifname,
                "nodad",
            ])?;
            inside(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &GATEWAY_V6.to_string(),
                "dev",
                w.ifname,
            ])?;
            node(&[
                "-6",
                "route",
                "add",
                &format!("{v6}/128"),
                "dev",
                w.host_ifname,
            ])?;
        }
        Ok(())
    };
    wire().inspect_err(|_| {
        let _ = node(&["link", "del", w.host_ifname]);
    })
}

/// Removes a workload's veth from the node side (both ends go). Succeeds if it is gone.
pub fn detach_workload(node: &str, host_ifname: &str) -> Result<()> {
    let exists = run("ip", &["-n", node, "link", "show", host_ifname]).is_ok();
    if exists {
        run("ip", &["-n", node, "link", "del", host_ifname])?;
    }
    Ok(())
}

/// The addresses on an interface of a namespace (for CNI CHECK and `workload list`).
pub fn addresses(netns: &str, ifname: &str) -> Result<Vec<IpAddr>> {
    let path = netns_path(netns);
    let text = run(
        "nsenter",
        &[
            &format!("--net={path}"),
            "--",
            "ip",
            "-o",
            "addr",
            "show",
            "dev",
            ifname,
        ],
    )?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .filter(|ip: &IpAddr| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::veth_names;

    #[test]
    fn veth_names_come_from_ip_o_link_lines() {
        let text = "3: bh8bc66cfc9b1e2@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns qa1-shop-a\n5: bh8bc669fc9b1e1@if4: <BROADCAST> mtu 1500\n";
        assert_eq!(veth_names(text), ["bh8bc66cfc9b1e2", "bh8bc669fc9b1e1"]);
        assert!(veth_names("").is_empty());
    }
}
