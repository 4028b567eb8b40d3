//! The NFLOG tags reach userspace: real connections through a rendered table are logged
//! to NFLOG groups 1 (ingress) and 2 (egress) with the tags of the rules that decided
//! them, and each tag resolves to that rule through the model's `RuleIndex`. The
//! listener here speaks nfnetlink_log by hand (bind a group, read packet messages'
//! prefixes): the seed of the flow-log collector. Needs root, `ip` and `nft`; otherwise
//! the test passes after printing why it was skipped.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use bulkhead_api::load_str;
use bulkhead_dataplane::tag::{GROUP_EGRESS, GROUP_INGRESS, RuleIndex, RuleTag, TaggedRule};
use bulkhead_dataplane::{CommandRunner, Dataplane, LocalEndpoint, RenderConfig, Tagging, render};
use bulkhead_engine::Cluster;
use bulkhead_netns::{NodeSandbox, Service, tcp_connect};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

mod common;
use common::capable;

/// `NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET` and `… | NFULNL_MSG_CONFIG`.
const MSG_PACKET: u16 = 4 << 8;
const MSG_CONFIG: u16 = (4 << 8) | 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `NFULA_CFG_CMD`, `NFULA_CFG_MODE`, `NFULA_CFG_QTHRESH`, `NFULA_PREFIX`.
const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CFG_QTHRESH: u16 = 5;
const ATTR_PREFIX: u16 = 10;
const CMD_BIND: u8 = 1;
const COPY_META: u8 = 1;

const MODEL: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: shop, labels: {app: client}}
spec: {nodeName: n1}
status: {podIP: 10.65.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: shop, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.65.0.2}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: app == 'web'
  types: [Ingress]
  ingress:
    - {action: Allow, protocol: TCP, source: {selector: app == 'client'}, destination: {ports: [8080]}}
"#;

/// One nfnetlink_log config message for `group` with `attrs` (type, payload).
fn config(group: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&[0; 4]); // length, set below
    m.extend_from_slice(&MSG_CONFIG.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[0, 0]); // nfgenmsg: AF_UNSPEC, version 0
    m.extend_from_slice(&group.to_be_bytes());
    for (ty, data) in attrs {
        let len = 4 + data.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(data);
        m.resize(m.len().next_multiple_of(4), 0);
    }
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// A netlink message: (type, payload after the 16-byte header).
fn messages(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        out.push((ty, &buf[at + 16..at + len]));
        at += len.next_multiple_of(4);
    }
    out
}

/// A socket bound to NFLOG `groups` in the calling thread's namespace.
fn nflog_socket(groups: &[u16]) -> OwnedFd {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .expect("netlink socket");
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).expect("bind");
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000)).expect("timeout");
    let mode = [0, 0, 0xff, 0xff, COPY_META, 0]; // copy_range (BE), copy_mode, pad
    for (i, &group) in groups.iter().enumerate() {
        let msg = config(
            group,
            i as u32 + 1,
            // Flush every message at once (the default batches 100 or for 1 s).
            &[
                (CFG_CMD, &[CMD_BIND]),
                (CFG_MODE, &mode),
                (CFG_QTHRESH, &1u32.to_be_bytes()),
            ],
        );
        send(fd.as_raw_fd(), &msg, MsgFlags::empty()).expect("send bind");
        let mut buf = [0u8; 4096];
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("bind ack");
        let acked = messages(&buf[..n])
            .iter()
            .any(|(ty, body)| *ty == NLMSG_ERROR && body.len() >= 4 && body[..4] == [0, 0, 0, 0]);
        assert!(acked, "binding NFLOG group {group} was refused");
    }
    fd
}

/// The (group, prefix) of every packet logged within `window`.
fn logged(fd: &OwnedFd, window: Duration) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let end = Instant::now() + window;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue; // timeout: look at the clock again
        };
        for (ty, body) in messages(&buf[..n]) {
            if ty != MSG_PACKET || body.len() < 4 {
                continue;
            }
            let group = u16::from_be_bytes([body[2], body[3]]);
            let mut at = 4;
            while at + 4 <= body.len() {
                let len = u16::from_ne_bytes([body[at], body[at + 1]]) as usize;
                let kind = u16::from_ne_bytes([body[at + 2], body[at + 3]]) & 0x3fff;
                if len < 4 || at + len > body.len() {
                    break;
                }
                if kind == ATTR_PREFIX {
                    let text = &body[at + 4..at + len];
                    let text = text.split(|b| *b == 0).next().unwrap_or_default();
                    out.push((group, String::from_utf8_lossy(text).into_owned()));
                }
                at += len.next_multiple_of(4);
            }
        }
    }
    out
}

#[test]
fn connections_are_logged_with_the_tags_of_the_rules_that_decided_them() {
    if !capable() {
        return;
    }
    let loaded = load_str("model.yaml", MODEL).expect("valid model");
    let resources: Vec<_> = loaded.into_iter().map(|l| l.resource).collect();
    let cluster = Cluster::build(&resources).expect("builds");
    let index = RuleIndex::of(&cluster);

    let node = NodeSandbox::new(&format!("bh-nflog-{}", std::process::id())).expect("node");
    let a = node
        .add_workload("a", Ipv4Addr::new(10, 65, 0, 1), None)
        .expect("workload a");
    let b = node
        .add_workload("b", Ipv4Addr::new(10, 65, 0, 2), None)
        .expect("workload b");
    b.netns()
        .serve(&[Service::Tcp(8080), Service::Tcp(8081)])
        .expect("servers");
    let local: Vec<LocalEndpoint> = [("a", &a), ("b", &b)]
        .into_iter()
        .map(|(name, w)| LocalEndpoint::workload("shop", name, w.host_ifname()))
        .collect();
    let config = RenderConfig {
        workload_prefix: "cali".into(),
        tagging: Tagging::On,
        ..RenderConfig::default()
    };
    let mut dp = Dataplane::new(CommandRunner::in_netns(node.name()));
    dp.apply(render(&cluster, &local, &config)).expect("load");
    let fd = node
        .netns()
        .run_in(|| nflog_socket(&[GROUP_INGRESS, GROUP_EGRESS]))
        .expect("listener in the node");

    let resolve = |(group, prefix): &(u16, String)| -> (u16, RuleTag, TaggedRule) {
        let tag = RuleTag::parse(prefix).unwrap_or_else(|e| panic!("{e}"));
        let rule = index.get(&tag).cloned().expect("a rule of the model");
        (*group, tag, rule)
    };
    let timeout = Duration::from_millis(500);
    let target = IpAddr::V4(b.ipv4());

    assert!(tcp_connect(a.netns(), target, 8080, timeout), "allowed");
    let allowed: Vec<_> = logged(&fd, Duration::from_millis(300))
        .iter()
        .map(resolve)
        .collect();
    // a's egress: its namespace's profile; b's ingress: the policy's rule 0. Once each
    // (one connection, and established packets never reach the policy chains).
    let egress = allowed
        .iter()
        .filter(|(g, t, r)| {
            *g == GROUP_EGRESS
                && !t.ingress
                && matches!(r, TaggedRule::Profile { profile, index: 0 } if profile == "kns.shop")
        })
        .count();
    let ingress = allowed
        .iter()
        .filter(|(g, t, r)| {
            *g == GROUP_INGRESS
                && t.ingress
                && t.to_string().starts_with('A')
                && matches!(r, TaggedRule::Policy { policy, index: 0 } if &*policy.name == "web")
        })
        .count();
    assert_eq!((egress, ingress, allowed.len()), (1, 1, 2), "{allowed:?}");

    assert!(!tcp_connect(a.netns(), target, 8081, timeout), "denied");
    let denied: Vec<_> = logged(&fd, Duration::from_millis(300))
        .iter()
        .map(resolve)
        .collect();
    // The SYN (and its retransmissions) end at the default tier's end.
    assert!(
        denied.iter().any(|(g, t, r)| *g == GROUP_INGRESS
            && t.to_string().starts_with("DI")
            && matches!(r, TaggedRule::EndOfTier { tier } if tier == "default")),
        "{denied:?}"
    );
}
