//! Typed set-element changes, how their keys look on the wire, and how they are read
//! from two [`Table`]s (whose elements are nft text).

use std::net::IpAddr;

use ipnet::IpNet;

use super::consts::{IFNAMSIZ, NFT_NAME_MAXLEN, NFT_REG32_SIZE};
use crate::diff::TableDiff;
use crate::table::SetKind;

/// Adding or removing elements: `NFT_MSG_NEWSETELEM` or `NFT_MSG_DELSETELEM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementOp {
    /// `add element` (`NLM_F_CREATE`: adding an element that exists is not an error).
    Add,
    /// `delete element` (removing an element that does not exist is `ENOENT`).
    Delete,
}

/// What a set or map is keyed by, which decides how its elements are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetType {
    /// A set of [`SetKind`].
    Set(SetKind),
    /// `ifname : verdict`, the interface dispatch maps.
    VerdictMap,
}

/// A verdict stored in a verdict map element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
}

/// One element of an `addr . inet_proto . inet_service` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrProtoPort {
    /// The address (its family must be the set's).
    pub addr: IpAddr,
    /// IP protocol number (`inet_proto`).
    pub proto: u8,
    /// Port (`inet_service`).
    pub port: u16,
}

/// The elements of one change, all of one set's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elements {
    /// Prefixes of an `ipv4_addr` or `ipv6_addr` interval set, all of the set's family.
    /// Each is sent as nft sends it: the start key, then the first address after the
    /// prefix flagged `NFT_SET_ELEM_INTERVAL_END` (or, when the prefix runs to the end
    /// of the address space, the start alone, marked open in its user data).
    Prefixes {
        /// The prefixes (host bits zero).
        prefixes: Vec<IpNet>,
        /// The set holds no element before this change. Like nft, an addition then
        /// also sends an interval end at the all-zero key, unless a prefix starts there.
        set_was_empty: bool,
    },
    /// Addresses of an `ipv4_addr` or `ipv6_addr` hash set, all of the set's family.
    Addresses(Vec<IpAddr>),
    /// Elements of an `addr . inet_proto . inet_service` set.
    AddrProtoPorts(Vec<AddrProtoPort>),
    /// Interface names: elements of an `ifname` set, or the keys of a verdict map's
    /// elements being deleted (a deletion names only the key).
    Ifnames(Vec<String>),
    /// Elements of an `ifname : verdict` map being added.
    Verdicts(Vec<(String, Verdict)>),
}

impl Elements {
    /// Number of elements (prefixes, tuples, names or map entries).
    pub fn len(&self) -> usize {
        match self {
            Elements::Prefixes { prefixes, .. } => prefixes.len(),
            Elements::Addresses(v) => v.len(),
            Elements::AddrProtoPorts(v) => v.len(),
            Elements::Ifnames(v) => v.len(),
            Elements::Verdicts(v) => v.len(),
        }
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th element as nft writes it, for error messages.
    pub fn describe(&self, i: usize) -> String {
        match self {
            Elements::Prefixes { prefixes, .. } => prefixes[i].to_string(),
            Elements::Addresses(v) => v[i].to_string(),
            Elements::AddrProtoPorts(v) => {
                let e = v[i];
                format!("{} . {} . {}", e.addr, e.proto, e.port)
            }
            Elements::Ifnames(v) => format!("\"{}\"", v[i]),
            Elements::Verdicts(v) => format!("\"{}\" : {}", v[i].0, v[i].1),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Drop => f.write_str("drop"),
            Verdict::Jump(c) => write!(f, "jump {c}"),
            Verdict::Goto(c) => write!(f, "goto {c}"),
        }
    }
}

/// Elements added to or removed from one set or map of the table `inet bulkhead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    /// Add or delete.
    pub op: ElementOp,
    /// The set's or map's name.
    pub set: String,
    /// The elements.
    pub elements: Elements,
}

/// Why a change cannot go as set-element messages (the caller uses `nft` instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an element-only change netlink can send: {0}")]
pub struct Unsupported(pub String);

/// The element changes of `diff`, in the order its nft script writes them: per set,
/// removals then additions; per map, the keys that go or change value removed, then the
/// new entries added. One batch holding them all is one kernel transaction, so the order
/// inside it only has to avoid transient conflicts (an interval removed before an
/// overlapping one is added).
///
/// `Err` when anything but elements differs (sets, maps or chains added, removed or
/// changed), or an element is not one this module encodes.
pub fn element_changes(diff: &TableDiff<'_>) -> Result<Vec<ElementChange>, Unsupported> {
    if !diff.elements_only() {
        return Err(Unsupported(
            "sets, maps or chains are added, removed or changed".into(),
        ));
    }
    let mut out = Vec::new();
    for e in &diff.set_elements {
        if !e.gone.is_empty() {
            let gone: Vec<&String> = e.gone.iter().collect();
            out.push(ElementChange {
                op: ElementOp::Delete,
                set: e.set.to_string(),
                elements: parse_elements(e.kind, &gone, false)?,
            });
        }
        if !e.came.is_empty() {
            out.push(ElementChange {
                op: ElementOp::Add,
                set: e.set.to_string(),
                elements: parse_elements(e.kind, &e.came, e.was_empty)?,
            });
        }
    }
    for m in &diff.map_elements {
        if !m.gone.is_empty() {
            let keys = m
                .gone
                .iter()
                .map(|k| parse_ifname(k))
                .collect::<Result<_, _>>()?;
            out.push(ElementChange {
                op: ElementOp::Delete,
                set: m.map.to_string(),
                elements: Elements::Ifnames(keys),
            });
        }
        if !m.came.is_empty() {
            let entries = m
                .came
                .iter()
                .map(|(k, v)| Ok((parse_ifname(k)?, parse_verdict(v)?)))
                .collect::<Result<_, Unsupported>>()?;
            out.push(ElementChange {
                op: ElementOp::Add,
                set: m.map.to_string(),
                elements: Elements::Verdicts(entries),
            });
        }
    }
    Ok(out)
}

/// Parses nft element text of a set of `kind`.
pub fn parse_elements(
    kind: SetKind,
    texts: &[&String],
    set_was_empty: bool,
) -> Result<Elements, Unsupported> {
    Ok(match kind {
        SetKind::Ipv4 | SetKind::Ipv6 => Elements::Prefixes {
            prefixes: texts
                .iter()
                .map(|t| parse_prefix(t, kind == SetKind::Ipv4))
                .collect::<Result<_, _>>()?,
            set_was_empty,
        },
        SetKind::Ipv4Hosts | SetKind::Ipv6Hosts => Elements::Addresses(
            texts
                .iter()
                .map(|t| parse_addr(t, kind == SetKind::Ipv4Hosts))
                .collect::<Result<_, _>>()?,
        ),
        SetKind::Ipv4Port | SetKind::Ipv6Port => Elements::AddrProtoPorts(
            texts
                .iter()
                .map(|t| parse_addr_proto_port(t, kind == SetKind::Ipv4Port))
                .collect::<Result<_, _>>()?,
        ),
        SetKind::Ifname => Elements::Ifnames(
            texts
                .iter()
                .map(|t| parse_ifname(t))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn parse_prefix(text: &str, v4: bool) -> Result<IpNet, Unsupported> {
    let net = match text.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| Unsupported(format!("{text:?} is not an address or prefix")))?,
    };
    if matches!(net, IpNet::V4(_)) != v4 {
        return Err(Unsupported(format!(
            "{text:?} is of the other address family"
        )));
    }
    if net.trunc() != net {
        return Err(Unsupported(format!("{text:?} has host bits set")));
    }
    Ok(net)
}

fn parse_addr(text: &str, v4: bool) -> Result<IpAddr, Unsupported> {
    let addr: IpAddr = text
        .parse()
        .map_err(|_| Unsupported(format!("{text:?} is not an address")))?;
    if addr.is_ipv4() != v4 {
        return Err(Unsupported(format!(
            "{text:?} is of the other address family"
        )));
    }
    Ok(addr)
}

fn parse_addr_proto_port(text: &str, v4: bool) -> Result<AddrProtoPort, Unsupported> {
    let bad = || Unsupported(format!("{text:?} is not `addr . proto . port`"));
    let mut parts = text.split(" . ");
    let (Some(a), Some(p), Some(port), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
    if addr.is_ipv4() != v4 {
        return Err(Unsupported(format!(
            "{text:?} is of the other address family"
        )));
    }
    let proto = match p.trim() {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "ipv6-icmp" => 58,
        "sctp" => 132,
        "udplite" => 136,
        n => n.parse().map_err(|_| bad())?,
    };
    let port = port.trim().parse().map_err(|_| bad())?;
    Ok(AddrProtoPort { addr, proto, port })
}

/// `"name"` → `name`: a whole interface name (no wildcard) that fits `IFNAMSIZ`.
fn parse_ifname(text: &str) -> Result<String, Unsupported> {
    let name = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if name.is_empty()
        || name.len() >= IFNAMSIZ
        || name.contains(['"', '*', '\0', '\\'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(Unsupported(format!("{text:?} is not an interface name")));
    }
    Ok(name.to_string())
}

fn parse_verdict(text: &str) -> Result<Verdict, Unsupported> {
    let chain = |c: &str| {
        if c.is_empty() || c.len() >= NFT_NAME_MAXLEN || c.contains([' ', '"', '\0']) {
            Err(Unsupported(format!("{text:?}: bad chain name")))
        } else {
            Ok(c.to_string())
        }
    };
    match text.trim().split_once(' ') {
        None if text.trim() == "accept" => Ok(Verdict::Accept),
        None if text.trim() == "drop" => Ok(Verdict::Drop),
        Some(("jump", c)) => Ok(Verdict::Jump(chain(c.trim())?)),
        Some(("goto", c)) => Ok(Verdict::Goto(chain(c.trim())?)),
        _ => Err(Unsupported(format!("{text:?} is not a verdict"))),
    }
}

// Keys on the wire ------------------------------------------------------------------------

/// An address key: the address in network byte order (4 or 16 bytes).
pub(crate) fn addr_key(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A concatenated `addr . inet_proto . inet_service` key: every field starts a 4-byte
/// register (`NFT_REG32_SIZE`), zero padded: 4 + 4 + 4 bytes for IPv4, 16 + 4 + 4 for
/// IPv6; the port is big-endian in the first two bytes of its register.
pub(crate) fn concat_key(e: &AddrProtoPort) -> Vec<u8> {
    let mut key = addr_key(e.addr);
    let mut proto = [0u8; NFT_REG32_SIZE];
    proto[0] = e.proto;
    key.extend_from_slice(&proto);
    let mut port = [0u8; NFT_REG32_SIZE];
    port[..2].copy_from_slice(&e.port.to_be_bytes());
    key.extend_from_slice(&port);
    key
}

/// An `ifname` key: the name zero padded to `IFNAMSIZ` (16) bytes.
pub(crate) fn ifname_key(name: &str) -> Vec<u8> {
    let mut key = vec![0u8; IFNAMSIZ];
    key[..name.len()].copy_from_slice(name.as_bytes());
    key
}

/// The keys of a prefix as an interval: its first address, and the first address after
/// it (`None` when the prefix runs to the end of the address space).
pub(crate) fn interval_keys(net: &IpNet) -> (Vec<u8>, Option<Vec<u8>>) {
    match net {
        IpNet::V4(n) => {
            let start = u32::from(n.network());
            let end = u32::from(n.broadcast()).checked_add(1);
            (
                start.to_be_bytes().to_vec(),
                end.map(|e| e.to_be_bytes().to_vec()),
            )
        }
        IpNet::V6(n) => {
            let start = u128::from(n.network());
            let end = u128::from(n.broadcast()).checked_add(1);
            (
                start.to_be_bytes().to_vec(),
                end.map(|e| e.to_be_bytes().to_vec()),
            )
        }
    }
}

/// The prefix an interval `[start, end)` (or `[start, max]` when `end` is `None`) covers,
/// if it is one.
pub(crate) fn interval_prefix(start: &[u8], end: Option<&[u8]>) -> Option<IpNet> {
    match start.len() {
        4 => {
            let s = u32::from_be_bytes(start.try_into().ok()?);
            let size = match end {
                Some(e) => u64::from(u32::from_be_bytes(e.try_into().ok()?)) - u64::from(s),
                None => (1u64 << 32) - u64::from(s),
            };
            prefix_len(u128::from(s), u128::from(size), 32)
                .and_then(|len| IpNet::new(IpAddr::from(s.to_be_bytes()), len).ok())
        }
        16 => {
            let s = u128::from_be_bytes(start.try_into().ok()?);
            // Sizes up to 2^128 do not fit u128: count from the top instead.
            let (size, all) = match end {
                Some(e) => (
                    u128::from_be_bytes(e.try_into().ok()?).checked_sub(s)?,
                    false,
                ),
                None if s == 0 => (0, true),
                None => (s.wrapping_neg(), false),
            };
            let len = if all {
                Some(0)
            } else {
                prefix_len(s, size, 128)
            };
            len.and_then(|len| IpNet::new(IpAddr::from(s.to_be_bytes()), len).ok())
        }
        _ => None,
    }
}

fn prefix_len(start: u128, size: u128, bits: u8) -> Option<u8> {
    if size == 0 || !size.is_power_of_two() || !start.is_multiple_of(size) {
        return None;
    }
    Some(bits - size.trailing_zeros() as u8)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::table::{Set, Table, VerdictMap};

    fn set(kind: SetKind, elements: &[&str]) -> Set {
        Set {
            kind,
            elements: elements.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn keys_are_padded_to_registers() {
        let e = AddrProtoPort {
            addr: "10.65.0.1".parse().expect("ip"),
            proto: 6,
            port: 8080,
        };
        assert_eq!(concat_key(&e), [10, 65, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(ifname_key("cali1")[..6], *b"cali1\0");
        assert_eq!(ifname_key("cali1").len(), 16);
    }

    #[test]
    fn intervals_and_prefixes_round_trip() {
        for p in [
            "10.65.0.1/32",
            "10.65.0.0/24",
            "0.0.0.0/0",
            "255.255.255.0/24",
            "128.0.0.0/1",
            "fd00::/64",
            "::/0",
            "ffff::/16",
            "fd00::1/128",
        ] {
            let net: IpNet = p.parse().expect("prefix");
            let (start, end) = interval_keys(&net);
            assert_eq!(interval_prefix(&start, end.as_deref()), Some(net), "{p}");
        }
        assert_eq!(
            interval_keys(&"255.255.255.0/24".parse().expect("prefix")).1,
            None
        );
        // Not a prefix: 10.0.0.1 - 10.0.0.3.
        assert_eq!(interval_prefix(&[10, 0, 0, 1], Some(&[10, 0, 0, 3])), None);
    }

    #[test]
    fn changes_follow_the_diff_order_and_parse_every_kind() {
        let mut old = Table::default();
        old.sets.insert(
            "s4_a".into(),
            set(SetKind::Ipv4, &["10.65.0.1/32", "10.65.1.0/24"]),
        );
        old.sets.insert("s6_a".into(), set(SetKind::Ipv6, &[]));
        old.sets.insert(
            "n4_a".into(),
            set(SetKind::Ipv4Port, &["10.65.0.1 . tcp . 80"]),
        );
        old.sets
            .insert("wl_known".into(), set(SetKind::Ifname, &["\"cali1\""]));
        old.maps.insert(
            "wl_from".into(),
            VerdictMap {
                elements: BTreeMap::from([("\"cali1\"".into(), "jump w.cali1.out".into())]),
            },
        );
        let mut new = old.clone();
        new.sets.get_mut("s4_a").expect("set").elements =
            ["10.65.1.0/24".to_string(), "10.66.0.0/16".to_string()].into();
        new.sets.get_mut("s6_a").expect("set").elements = ["fd00::/64".to_string()].into();
        new.sets.get_mut("n4_a").expect("set").elements =
            ["10.65.0.2 . 132 . 9".to_string()].into();
        new.maps.get_mut("wl_from").expect("map").elements =
            BTreeMap::from([("\"cali1\"".into(), "goto w.cali1.in".into())]);

        let changes = element_changes(&TableDiff::between(&old, &new)).expect("elements only");
        let summary: Vec<(ElementOp, &str, String)> = changes
            .iter()
            .map(|c| (c.op, c.set.as_str(), c.elements.describe(0)))
            .collect();
        assert_eq!(
            summary,
            vec![
                (ElementOp::Delete, "n4_a", "10.65.0.1 . 6 . 80".to_string()),
                (ElementOp::Add, "n4_a", "10.65.0.2 . 132 . 9".to_string()),
                (ElementOp::Delete, "s4_a", "10.65.0.1/32".to_string()),
                (ElementOp::Add, "s4_a", "10.66.0.0/16".to_string()),
                (ElementOp::Add, "s6_a", "fd00::/64".to_string()),
                (ElementOp::Delete, "wl_from", "\"cali1\"".to_string()),
                (
                    ElementOp::Add,
                    "wl_from",
                    "\"cali1\" : goto w.cali1.in".to_string()
                ),
            ]
        );
        assert!(matches!(
            changes[4].elements,
            Elements::Prefixes {
                set_was_empty: true,
                ..
            }
        ));
        assert!(matches!(
            changes[3].elements,
            Elements::Prefixes {
                set_was_empty: false,
                ..
            }
        ));
    }

    #[test]
    fn anything_but_elements_is_unsupported() {
        let mut old = Table::default();
        old.sets.insert("s4_a".into(), set(SetKind::Ipv4, &[]));
        let mut new = old.clone();
        new.sets.insert("s4_b".into(), set(SetKind::Ipv4, &[]));
        assert!(element_changes(&TableDiff::between(&old, &new)).is_err());
        let mut retyped = old.clone();
        retyped.sets.get_mut("s4_a").expect("set").kind = SetKind::Ipv6;
        assert!(element_changes(&TableDiff::between(&old, &retyped)).is_err());
        let mut odd = old.clone();
        odd.sets.get_mut("s4_a").expect("set").elements = ["10.0.0.1/8".to_string()].into();
        assert!(
            element_changes(&TableDiff::between(&old, &odd)).is_err(),
            "host bits set"
        );
        let mut wild = Table::default();
        wild.sets.insert("i".into(), set(SetKind::Ifname, &[]));
        let mut wild2 = wild.clone();
        wild2.sets.get_mut("i").expect("set").elements = ["\"cali*\"".to_string()].into();
        assert!(
            element_changes(&TableDiff::between(&wild, &wild2)).is_err(),
            "wildcard"
        );
        assert_eq!(
            element_changes(&TableDiff::between(&old, &old.clone())),
            Ok(vec![])
        );
    }
}
