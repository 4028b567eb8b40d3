//! One compiled rule → nft rule text, per address family, plus the sets it refers to.
//!
//! A rule's criteria are ANDed into one nft rule. Selectors and named ports become set
//! lookups (`ip saddr @s4_…`, `ip daddr . meta l4proto . th dport @n4_…`), so a rule costs
//! one lookup per criterion however many endpoints match. Two things need more than one
//! nft rule: a rule that matches numeric ports OR named ports is rendered once for each,
//! and every rule is rendered once per address family it can match.
//!
//! Rendering needs no cluster: a rule's text depends only on the rule. The sets it refers
//! to come out as [`SetRequest`]s (name → what the set holds); their *members* are
//! computed separately, from scratch by [`request_set`] (a scan of a [`Cluster`]) or
//! incrementally by `bulkhead-calc`. Both build the set with [`selector_set`] or
//! [`named_port_set`], so there is one implementation of its kind and text either way.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use bulkhead_api::values::{Port, Protocol};
use bulkhead_engine::Cluster;
use bulkhead_engine::compile::{Entity, Rule};
use bulkhead_selector::Selector;
use ipnet::IpNet;
use sha2::{Digest, Sha224};

use crate::table::{Set, SetKind};

/// Mark bit: a policy or profile accepted the packet.
pub const MARK_ACCEPT: u32 = 0x1_0000;
/// Mark bit: a policy passed the packet to the next tier.
pub const MARK_PASS: u32 = 0x2_0000;

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// True if `ip` is of this family.
    pub fn has(self, ip: &IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }

    fn addr(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The match that restricts a rule of an `inet` table to this family.
    fn nfproto(self) -> &'static str {
        match self {
            Family::V4 => "meta nfproto ipv4",
            Family::V6 => "meta nfproto ipv6",
        }
    }

    fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// True if `net` is of this family.
    pub fn contains(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }
}

/// What a set holds, whatever the address family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetSource {
    /// The address of every endpoint and the CIDRs of every network set whose labels
    /// match the selector.
    Selector(Selector),
    /// `(address, protocol, port)` of every endpoint that matches `selector` (any endpoint
    /// when `None`) and has a port called one of `names` with `protocol`.
    NamedPort {
        /// The rule side's positive selector.
        selector: Option<Selector>,
        /// Port names, in rule order.
        names: Vec<String>,
        /// The protocol named ports are looked up with.
        protocol: Protocol,
    },
}

/// A set that rendered rules refer to: its family and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetRequest {
    /// IPv4 or IPv6.
    pub family: Family,
    /// What it holds.
    pub source: SetSource,
}

/// The sets rendered rules refer to, by set name.
pub type SetRequests = BTreeMap<String, SetRequest>;

/// A requested set with its members, computed from scratch by scanning `cluster`.
pub fn request_set(cluster: &Cluster, request: &SetRequest) -> Set {
    match &request.source {
        SetSource::Selector(sel) => selector_set(request.family, &cluster.selector_members(sel)),
        SetSource::NamedPort {
            selector,
            names,
            protocol,
        } => named_port_set(
            request.family,
            cluster.named_port_members(selector.as_ref(), names, *protocol),
        ),
    }
}

/// The set of a selector in `family` with these members (endpoint addresses as host
/// prefixes, network-set CIDRs truncated).
///
/// Its kind follows its content: while every member is a single address (the common
/// case: endpoints only), a hash set of addresses, which the kernel looks up with one
/// hash probe; once a real prefix is a member, an interval set of non-overlapping
/// prefixes (aggregated, because nft interval sets reject overlaps), which the kernel
/// searches. An empty set is a hash set. Rules refer to the set by name whatever its
/// kind, so only the set changes when the kind does (see `diff`).
pub fn selector_set<'a>(family: Family, members: impl IntoIterator<Item = &'a IpNet>) -> Set {
    let members: Vec<IpNet> = members
        .into_iter()
        .filter(|n| family.contains(n))
        .copied()
        .collect();
    let kind = selector_set_kind(family, members.iter().any(|n| !is_host(n)));
    let elements = if is_interval(kind) {
        IpNet::aggregate(&members)
            .iter()
            .map(prefix_element)
            .collect()
    } else {
        members.iter().map(host_element).collect()
    };
    Set { kind, elements }
}

/// A selector set's kind: a hash set of addresses until a real prefix is a member.
fn selector_set_kind(family: Family, prefix_member: bool) -> SetKind {
    match (family, prefix_member) {
        (Family::V4, false) => SetKind::Ipv4Hosts,
        (Family::V6, false) => SetKind::Ipv6Hosts,
        (Family::V4, true) => SetKind::Ipv4,
        (Family::V6, true) => SetKind::Ipv6,
    }
}

fn is_interval(kind: SetKind) -> bool {
    matches!(kind, SetKind::Ipv4 | SetKind::Ipv6)
}

fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// An element of a set of addresses: the bare address of a host prefix.
fn host_element(net: &IpNet) -> String {
    net.addr().to_string()
}

/// An element of an interval set: a prefix.
fn prefix_element(net: &IpNet) -> String {
    net.to_string()
}

/// Element changes to one set: what leaves it and what joins it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetEdit {
    /// Elements that may leave (an element the set does not hold is no change).
    pub gone: Vec<String>,
    /// Elements that may join (an element the set holds already is no change).
    pub came: Vec<String>,
}

/// What turns `current`, the selector set of `family` ([`selector_set`]), into the set
/// of its members after some of them flipped, at a cost that follows the flips, not the
/// set: `members` names each member key that may have appeared or disappeared, with
/// whether it is a member now; `pieces` does the same for the maximal prefixes of the
/// members' union (an interval set's elements, as [`IpNet::aggregate`] gives them);
/// `prefix_member` says whether a real prefix of `family` is a member now. `None` when
/// the set's kind changes: it must be built again.
pub fn selector_set_edit<'a>(
    family: Family,
    current: &Set,
    members: impl IntoIterator<Item = (&'a IpNet, bool)>,
    pieces: impl IntoIterator<Item = (&'a IpNet, bool)>,
    prefix_member: bool,
) -> Option<SetEdit> {
    let kind = selector_set_kind(family, prefix_member);
    if current.kind != kind {
        return None;
    }
    let (flipped, element): (Vec<_>, fn(&IpNet) -> String) = if is_interval(kind) {
        (pieces.into_iter().collect(), prefix_element)
    } else {
        // In a set of addresses, a prefix is never an element (one that came and went).
        let hosts = members.into_iter().filter(|(n, _)| is_host(n));
        (hosts.collect(), host_element)
    };
    let mut edit = SetEdit::default();
    for (net, now) in flipped.into_iter().filter(|(n, _)| family.contains(n)) {
        if now {
            edit.came.push(element(net));
        } else {
            edit.gone.push(element(net));
        }
    }
    Some(edit)
}

/// What turns the named-port set of `family` ([`named_port_set`]) into the set of its
/// members after some flipped: `flipped` names each `(address, protocol, port)` member
/// that may have appeared or disappeared, with whether it is a member now.
pub fn named_port_set_edit(
    family: Family,
    flipped: impl IntoIterator<Item = ((IpAddr, Protocol, u16), bool)>,
) -> SetEdit {
    let mut edit = SetEdit::default();
    for ((ip, proto, port), now) in flipped.into_iter().filter(|((ip, _, _), _)| family.has(ip)) {
        let element = named_port_element(ip, proto, port);
        if now {
            edit.came.push(element);
        } else {
            edit.gone.push(element);
        }
    }
    edit
}

/// The named-port set in `family` with these `(address, protocol, port)` members (those
/// of the other family are left out).
pub fn named_port_set(
    family: Family,
    members: impl IntoIterator<Item = (IpAddr, Protocol, u16)>,
) -> Set {
    Set {
        kind: match family {
            Family::V4 => SetKind::Ipv4Port,
            Family::V6 => SetKind::Ipv6Port,
        },
        elements: members
            .into_iter()
            .filter(|(ip, _, _)| family.has(ip))
            .map(|(ip, proto, port)| named_port_element(ip, proto, port))
            .collect(),
    }
}

/// One element of a named-port set.
fn named_port_element(ip: IpAddr, protocol: Protocol, port: u16) -> String {
    format!("{ip} . {} . {port}", proto_name(protocol))
}

/// Renders rules, collecting the sets they refer to.
pub struct RuleRenderer<'a> {
    sets: &'a mut SetRequests,
}

impl<'a> RuleRenderer<'a> {
    /// A renderer that adds the sets its rules refer to to `sets`.
    pub fn new(sets: &'a mut SetRequests) -> Self {
        RuleRenderer { sets }
    }

    /// The nft rules for `rule`'s matches, each ending in `action` (the statements and
    /// verdict that carry out the rule's action) and `comment`, which identifies the rule.
    ///
    /// A rule whose matches read the same in both families (no addresses, sets or
    /// family-specific ICMP) is rendered once, without `meta nfproto`: in an `inet` table
    /// it then matches IPv4 and IPv6 packets alike, as its two twins would, at the cost
    /// of one rule instead of two on a packet's walk.
    pub fn render(&mut self, rule: &Rule, action: &str, comment: &str) -> Vec<String> {
        let [v4, v6] = [Family::V4, Family::V6].map(|family| self.matches(rule, family));
        let bodies: Vec<String> = if !v4.is_empty() && v4 == v6 {
            v4
        } else {
            let restricted = |family: Family, matches: Vec<String>| {
                matches.into_iter().map(move |m| {
                    if m.is_empty() {
                        family.nfproto().to_string()
                    } else {
                        format!("{} {m}", family.nfproto())
                    }
                })
            };
            restricted(Family::V4, v4)
                .chain(restricted(Family::V6, v6))
                .collect()
        };
        bodies
            .into_iter()
            .map(|body| {
                let sep = if body.is_empty() { "" } else { " " };
                format!("{body}{sep}{action} comment \"{comment}\"")
            })
            .collect()
    }

    /// The match strings of `rule` in `family` (one per nft rule; empty if the rule
    /// cannot match in `family`), without the family match itself.
    fn matches(&mut self, rule: &Rule, family: Family) -> Vec<String> {
        if rule.ip_version.is_some_and(|v| v != family.number()) {
            return Vec::new();
        }
        let Some(common) = self.common(rule, family) else {
            return Vec::new();
        };
        let Some(src) = self.entity(&rule.src, family, "saddr", "sport") else {
            return Vec::new();
        };
        let Some(dst) = self.entity(&rule.dst, family, "daddr", "dport") else {
            return Vec::new();
        };
        // The destination side first: in the common ingress rule it is only a port
        // compare, which settles most packets before the source's set lookup.
        let mut out = Vec::new();
        for s in &src {
            for d in &dst {
                out.push(
                    [common.as_str(), d.as_str(), s.as_str()]
                        .iter()
                        .filter(|p| !p.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }
        out
    }

    /// Protocol and ICMP matches; `None` if the rule cannot match in `family`.
    fn common(&self, rule: &Rule, family: Family) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(p) = rule.protocol {
            parts.push(format!("meta l4proto {}", proto_name(p)));
        }
        if let Some(p) = rule.not_protocol {
            parts.push(format!("meta l4proto != {}", proto_name(p)));
        }
        let icmp_kw = match rule.protocol {
            Some(Protocol::ICMPV6) => "icmpv6",
            _ => "icmp",
        };
        if let Some(i) = &rule.icmp {
            if let Some(t) = i.icmp_type {
                parts.push(format!("{icmp_kw} type {t}"));
            }
            if let Some(c) = i.code {
                parts.push(format!("{icmp_kw} code {c}"));
            }
        }
        if let Some(i) = &rule.not_icmp {
            match (i.icmp_type, i.code) {
                (Some(t), Some(c)) => parts.push(format!(
                    "{icmp_kw} type . {icmp_kw} code != {{ {t} . {c} }}"
                )),
                (Some(t), None) => parts.push(format!("{icmp_kw} type != {t}")),
                _ => {}
            }
        }
        // ICMP is IPv4-only and ICMPv6 IPv6-only: skip the family that cannot carry it.
        match (rule.protocol, family) {
            (Some(Protocol::ICMP), Family::V6) | (Some(Protocol::ICMPV6), Family::V4) => None,
            _ => Some(parts.join(" ")),
        }
    }

    /// One side's criteria as alternative match strings (ORed: one nft rule each);
    /// `None` if the side cannot match in `family`.
    fn entity(
        &mut self,
        e: &Entity,
        family: Family,
        addr_dir: &str,
        port_dir: &str,
    ) -> Option<Vec<String>> {
        let addr = format!("{} {addr_dir}", family.addr());
        let mut parts = Vec::new();
        if !e.nets.is_empty() {
            let nets: Vec<IpNet> = e
                .nets
                .iter()
                .filter(|n| family.contains(n))
                .map(IpNet::trunc)
                .collect();
            if nets.is_empty() {
                return None;
            }
            parts.push(format!("{addr} {{ {} }}", join_nets(&nets)));
        }
        let not_nets: Vec<IpNet> = e
            .not_nets
            .iter()
            .filter(|n| family.contains(n))
            .map(IpNet::trunc)
            .collect();
        if !not_nets.is_empty() {
            parts.push(format!("{addr} != {{ {} }}", join_nets(&not_nets)));
        }
        if let Some(sel) = &e.selector {
            parts.push(format!("{addr} @{}", self.selector_set(sel, family)));
        }
        if let Some(sel) = &e.not_selector {
            parts.push(format!("{addr} != @{}", self.selector_set(sel, family)));
        }
        let port = format!("th {port_dir}");
        let numeric = |ports: &[Port]| -> Vec<String> {
            ports
                .iter()
                .filter_map(|p| match p {
                    Port::Range { min, max } if min == max => Some(min.to_string()),
                    Port::Range { min, max } => Some(format!("{min}-{max}")),
                    Port::Named(_) => None,
                })
                .collect()
        };
        let named = |ports: &[Port]| -> Vec<String> {
            ports
                .iter()
                .filter_map(|p| match p {
                    Port::Named(n) => Some(n.clone()),
                    Port::Range { .. } => None,
                })
                .collect()
        };
        let key = format!("{addr} . meta l4proto . {port}");
        // Port compares are cheap: they go before any address or set lookup, so a packet
        // for another port leaves the rule without touching a (possibly large) set.
        let not_numeric = numeric(&e.not_ports);
        if !not_numeric.is_empty() {
            parts.insert(0, format!("{port} != {}", port_match(&not_numeric)));
        }
        let not_named = named(&e.not_ports);
        if !not_named.is_empty() {
            let set = self.named_port_set(e, &not_named, family);
            parts.push(format!("{key} != @{set}"));
        }
        let base = parts.join(" ");
        let join = |first: String, then: &str| {
            if then.is_empty() {
                first
            } else if first.is_empty() {
                then.to_string()
            } else {
                format!("{first} {then}")
            }
        };
        let pos_numeric = numeric(&e.ports);
        let pos_named = named(&e.ports);
        if pos_numeric.is_empty() && pos_named.is_empty() {
            return Some(vec![base]);
        }
        let mut alternatives = Vec::new();
        if !pos_numeric.is_empty() {
            alternatives.push(join(format!("{port} {}", port_match(&pos_numeric)), &base));
        }
        if !pos_named.is_empty() {
            let set = self.named_port_set(e, &pos_named, family);
            alternatives.push(join(base.clone(), &format!("{key} @{set}")));
        }
        Some(alternatives)
    }

    /// The name of the set of a selector's members in `family`, requested on first use.
    fn selector_set(&mut self, sel: &Selector, family: Family) -> String {
        let id = sel.unique_id();
        let id = id.strip_prefix("s:").unwrap_or(&id);
        let name = match family {
            Family::V4 => format!("s4_{id}"),
            Family::V6 => format!("s6_{id}"),
        };
        self.sets.entry(name.clone()).or_insert_with(|| SetRequest {
            family,
            source: SetSource::Selector(sel.clone()),
        });
        name
    }

    /// The name of the set of `(address, protocol, port)` for the named ports `names` of
    /// endpoints matching the side's positive selector (any endpoint if it has none).
    fn named_port_set(&mut self, e: &Entity, names: &[String], family: Family) -> String {
        let sel_id = e
            .selector
            .as_ref()
            .map(Selector::unique_id)
            .unwrap_or_default();
        let mut hasher = Sha224::new();
        hasher.update(format!(
            "n:{sel_id},{},{}",
            proto_name(e.named_port_protocol),
            names.join(",")
        ));
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize());
        let name = match family {
            Family::V4 => format!("n4_{}", &hash[..24]),
            Family::V6 => format!("n6_{}", &hash[..24]),
        };
        self.sets.entry(name.clone()).or_insert_with(|| SetRequest {
            family,
            source: SetSource::NamedPort {
                selector: e.selector.clone(),
                names: names.to_vec(),
                protocol: e.named_port_protocol,
            },
        });
        name
    }
}

/// nft's name for a protocol (a number when it has none).
pub fn proto_name(p: Protocol) -> String {
    match p {
        Protocol::TCP => "tcp".into(),
        Protocol::UDP => "udp".into(),
        Protocol::ICMP => "icmp".into(),
        Protocol::ICMPV6 => "ipv6-icmp".into(),
        Protocol::SCTP => "sctp".into(),
        Protocol::UDPLITE => "udplite".into(),
        other => other.number().to_string(),
    }
}

/// The right-hand side of a port match: one port or range compared directly (a compare
/// is cheaper than a lookup), several as an anonymous set.
fn port_match(ports: &[String]) -> String {
    match ports {
        [one] => one.clone(),
        _ => format!("{{ {} }}", ports.join(", ")),
    }
}

fn join_nets(nets: &[IpNet]) -> String {
    IpNet::aggregate(&nets.to_vec())
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a rule with the Log action does: log to NFLOG group 3 with the rule's comment as
/// the prefix (NFLOG prefixes are at most 63 bytes), and go on.
pub fn log_action(comment: &str) -> String {
    let prefix: String = comment.chars().take(60).collect();
    format!("log prefix \"{prefix}\" group 3")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_policy::gnp;

    /// The nft rules of the first ingress rule of a policy with these `ingress` rules.
    fn rendered(ingress: &str) -> Vec<String> {
        let policy = gnp(&format!("ingress: [{ingress}]"));
        let mut sets = SetRequests::new();
        RuleRenderer::new(&mut sets).render(&policy.ingress[0], "accept", "c")
    }

    #[test]
    fn a_selector_set_is_edited_by_what_flipped_unless_its_kind_changes() {
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        let (a, b, v6, prefix) = (
            net("10.0.0.1/32"),
            net("10.0.0.2/32"),
            net("fd00::1/128"),
            net("10.1.0.0/16"),
        );
        let hosts = selector_set(Family::V4, [&a]);
        // A prefix that came and went is no element; the other family is left out.
        let members = [(&a, false), (&b, true), (&v6, true), (&prefix, false)];
        assert_eq!(
            selector_set_edit(Family::V4, &hosts, members, [], false),
            Some(SetEdit {
                gone: vec!["10.0.0.1".into()],
                came: vec!["10.0.0.2".into()],
            })
        );
        // A prefix joining a set of addresses changes its kind: built again.
        assert_eq!(
            selector_set_edit(Family::V4, &hosts, [(&prefix, true)], [], true),
            None
        );
        // An interval set takes the flipped pieces of the union, as prefixes.
        let prefixes = selector_set(Family::V4, [&a, &prefix]);
        assert_eq!(prefixes.kind, SetKind::Ipv4);
        let (pair, single) = (net("10.0.0.0/31"), net("10.0.0.1/32"));
        assert_eq!(
            selector_set_edit(
                Family::V4,
                &prefixes,
                [],
                [(&single, false), (&pair, true)],
                true
            ),
            Some(SetEdit {
                gone: vec!["10.0.0.1/32".into()],
                came: vec!["10.0.0.0/31".into()],
            })
        );
        // The last prefix leaving turns it back into a set of addresses: built again.
        assert_eq!(
            selector_set_edit(Family::V4, &prefixes, [], [], false),
            None
        );
    }

    #[test]
    fn a_rule_without_addresses_is_one_rule_for_both_families() {
        assert_eq!(
            rendered("{action: Allow, protocol: TCP, destination: {ports: [80]}}"),
            ["meta l4proto tcp th dport 80 accept comment \"c\""]
        );
        assert_eq!(rendered("{action: Allow}"), ["accept comment \"c\""]);
    }

    #[test]
    fn addresses_sets_and_families_keep_one_rule_per_family() {
        let sel = rendered("{action: Allow, source: {selector: app == 'a'}}");
        assert_eq!(sel.len(), 2, "{sel:?}");
        assert!(
            sel[0].starts_with("meta nfproto ipv4 ip saddr @s4_"),
            "{sel:?}"
        );
        assert!(
            sel[1].starts_with("meta nfproto ipv6 ip6 saddr @s6_"),
            "{sel:?}"
        );
        assert_eq!(
            rendered("{action: Allow, source: {nets: [10.0.0.0/8]}}"),
            ["meta nfproto ipv4 ip saddr { 10.0.0.0/8 } accept comment \"c\""]
        );
        assert_eq!(
            rendered("{action: Allow, ipVersion: 6}"),
            ["meta nfproto ipv6 accept comment \"c\""]
        );
        assert_eq!(
            rendered("{action: Allow, protocol: ICMP}"),
            ["meta nfproto ipv4 meta l4proto icmp accept comment \"c\""]
        );
    }
}
