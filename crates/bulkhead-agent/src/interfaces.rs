//! The node's interfaces and their addresses: where a host endpoint without
//! `interfaceName` applies (the interfaces holding one of its `expectedIPs`).
//!
//! Read with `ip -json address show` in the node's namespace, only while such a host
//! endpoint exists, at most once per [`REFRESH`] (Felix follows netlink address events
//! instead; an address that moves is picked up here within that interval).

use std::process::Command;
use std::time::Duration;

use bulkhead_dataplane::render::HostInterfaces;
use serde::Deserialize;

/// How often the addresses are read again while a host endpoint depends on them.
pub const REFRESH: Duration = Duration::from_secs(1);

/// One interface of `ip -json address show`; fields not needed are ignored.
#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<Address>,
}

/// One address of a [`Link`].
#[derive(Debug, Deserialize)]
struct Address {
    local: Option<String>,
}

/// The interfaces of `netns` (or the agent's own namespace) and their addresses.
pub fn read(netns: Option<&str>) -> Result<HostInterfaces, String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd
        .args(["-json", "address", "show"])
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    parse(&out.stdout)
}

/// Parses the output of `ip -json address show`.
pub fn parse(json: &[u8]) -> Result<HostInterfaces, String> {
    let links: Vec<Link> = serde_json::from_slice(json)
        .map_err(|e| format!("unexpected output of ip -json address show: {e}"))?;
    let mut out = HostInterfaces::new();
    for link in links {
        let addrs = out.entry(link.ifname).or_default();
        for a in link.addr_info {
            if let Some(ip) = a.local.and_then(|l| l.parse().ok()) {
                addrs.insert(ip);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_family_and_keeps_interfaces_without_addresses() {
        // Trimmed from `ip -json address show` (iproute2 6.1).
        let json = br#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"addr_info":[
            {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"},
            {"family":"inet6","local":"::1","prefixlen":128,"scope":"host"}]},
            {"ifindex":7,"link_index":6,"ifname":"eth1","addr_info":[
            {"family":"inet","local":"10.66.1.1","prefixlen":24},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]},
            {"ifindex":9,"ifname":"eth2","addr_info":[]},
            {"ifindex":10,"ifname":"eth3"}]"#;
        let got = parse(json).expect("parses");
        let show: Vec<(String, Vec<String>)> = got
            .iter()
            .map(|(i, a)| (i.clone(), a.iter().map(ToString::to_string).collect()))
            .collect();
        let want: Vec<(String, Vec<String>)> = [
            ("eth1", vec!["10.66.1.1", "fe80::1"]),
            ("eth2", vec![]),
            ("eth3", vec![]),
            ("lo", vec!["127.0.0.1", "::1"]),
        ]
        .into_iter()
        .map(|(i, a)| (i.to_string(), a.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(show, want);
    }

    #[test]
    fn other_output_is_an_error_that_says_what_was_read() {
        let e = parse(b"Object \"address\" is unknown").unwrap_err();
        assert!(e.contains("ip -json address show"), "{e}");
    }
}
