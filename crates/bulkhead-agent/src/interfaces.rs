//! The node's interfaces and their addresses: where a host endpoint without
//! `interfaceName` applies (the interfaces holding one of its `expectedIPs`).
//!
//! Read with `ip -json address show` in the node's namespace, only while such a host
//! endpoint exists: first, then whenever the kernel announces an address or link change
//! ([`AddressWatch`], netlink multicast, as Felix follows them), and at least every
//! [`RESYNC`] in case an announcement was lost.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use bulkhead_dataplane::render::HostInterfaces;
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};
use serde::Deserialize;

/// How often the addresses are read again without an announced change; also the
/// interval of reads when the watch could not be opened.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Reads without a watch: at most this often.
pub const UNWATCHED: Duration = Duration::from_secs(1);

/// `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR` (linux/rtnetlink.h).
const GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// A `NETLINK_ROUTE` socket subscribed to a namespace's link and address changes. It
/// only says *that* something changed; [`read`] says what the addresses are now.
#[derive(Debug)]
pub struct AddressWatch {
    fd: OwnedFd,
}

impl AddressWatch {
    /// A watch on the named network namespace (`/run/netns/NAME`), or on the agent's own.
    /// The socket is created on a short-lived thread that entered the namespace (`setns`
    /// is per thread), and belongs to that namespace for its life.
    pub fn open(netns: Option<&str>) -> std::io::Result<AddressWatch> {
        let Some(name) = netns else {
            return Self::open_here();
        };
        let file = File::open(format!("/run/netns/{name}"))?;
        std::thread::Builder::new()
            .name("bh-addr-watch".into())
            .spawn(move || {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET)?;
                Self::open_here()
            })?
            .join()
            .map_err(|_| std::io::Error::other("namespace thread panicked"))?
    }

    fn open_here() -> std::io::Result<AddressWatch> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUPS))?;
        Ok(AddressWatch { fd })
    }

    /// Whether the kernel announced a change since the last call (reads every pending
    /// announcement). A lost announcement (the socket overran) counts as a change.
    pub fn changed(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut changed = false;
        // Bounded: a namespace does not announce this many changes between two steps.
        for _ in 0..4096 {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(Errno::EAGAIN) => return changed,
                Ok(_) | Err(Errno::ENOBUFS) => changed = true,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "interface watch failed; reading addresses anyway");
                    return true;
                }
            }
        }
        changed
    }
}

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
