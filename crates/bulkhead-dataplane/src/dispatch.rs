//! Port dispatch: an endpoint chain sends a new connection straight to the policies that
//! can match its protocol and destination port.
//!
//! Without it, an endpoint chain jumps to every policy that selects the endpoint, in
//! order, and each policy chain tests its rules: the first packet of a connection walks a
//! rule list as long as all those policies together. Most rules name a protocol and
//! destination ports, so the endpoint chain first looks `meta l4proto . th dport` up in
//! one anonymous verdict map whose entries `goto` a *class chain*: the endpoint's tier
//! logic with only the policies whose rules can match that protocol and port. Packets the
//! map does not key (another protocol, a port no class needs) stay in the endpoint chain,
//! which holds the policies that can match those.
//!
//! Leaving a policy out of a class changes no verdict: it is left out only when none of
//! its rules can match any packet of the class (its [`Reach`] misses the class), and a
//! policy whose rules do not match has no effect on the walk. Tiers stay when all their
//! policies are left out, so the end of tier still drops. Profiles are never left out.
//! Class chains are named by a hash of their rules (`d.<hash>`), so endpoints with the
//! same policies share them, and a class chain never changes under its name.

use std::collections::BTreeMap;

use base64::Engine as _;
use bulkhead_api::values::{Port, Protocol};
use bulkhead_engine::compile::Rule;
use sha2::{Digest, Sha224};

use crate::rules::proto_name;

/// The protocols a dispatch map keys: those whose destination port `th dport` reads.
const KEYED: [Protocol; 3] = [Protocol::TCP, Protocol::UDP, Protocol::SCTP];

/// Endpoint chains with fewer policy jumps than this in one direction are not dispatched:
/// with one policy, the map could only spare the walk to packets that policy cannot match
/// (which end of tier drops anyway), and every other packet would pay one lookup more.
pub const MIN_POLICIES: usize = 2;

/// Which packets the rules of one policy (one direction) can match, in the terms of the
/// dispatch key: per keyed protocol, the destination port ranges; and whether any rule
/// can match a packet the map does not key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// Protocol → inclusive port ranges, sorted, merged.
    ports: BTreeMap<Protocol, Vec<(u16, u16)>>,
    /// Some rule can match a packet of an unkeyed protocol (ICMP, …), or any protocol.
    rest: bool,
}

impl Reach {
    /// The reach of `rules`. Conservative: a rule with no protocol can match anything; a
    /// keyed protocol with no numeric destination ports (none, named ones, or only
    /// `notPorts`) can match every port of it.
    pub fn of(rules: &[Rule]) -> Reach {
        let mut reach = Reach::default();
        for rule in rules {
            match rule.protocol {
                Some(p) if p.supports_ports() => {
                    let ranges = numeric_ranges(&rule.dst.ports).unwrap_or(vec![(0, u16::MAX)]);
                    reach.ports.entry(p).or_default().extend(ranges);
                }
                Some(_) => reach.rest = true,
                None => {
                    for p in KEYED {
                        reach.ports.entry(p).or_default().push((0, u16::MAX));
                    }
                    reach.rest = true;
                }
            }
        }
        for ranges in reach.ports.values_mut() {
            merge(ranges);
        }
        reach
    }

    /// True if some rule can match a packet of protocol `proto` to a port in `lo..=hi`,
    /// which lies inside one elementary interval (wholly inside or outside each range).
    fn covers(&self, proto: Protocol, lo: u16) -> bool {
        self.ports
            .get(&proto)
            .is_some_and(|r| r.iter().any(|&(a, b)| a <= lo && lo <= b))
    }
}

/// `Some` ranges if every port is numeric and there is at least one.
fn numeric_ranges(ports: &[Port]) -> Option<Vec<(u16, u16)>> {
    if ports.is_empty() {
        return None;
    }
    ports
        .iter()
        .map(|p| match p {
            Port::Range { min, max } => Some((*min, *max)),
            Port::Named(_) => None,
        })
        .collect()
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge(ranges: &mut Vec<(u16, u16)>) {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    *ranges = out;
}

/// One entry of the dispatch map: protocol, destination port range, and which of the
/// endpoint's policies (by position in tier order) can match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// Protocol (TCP, UDP or SCTP).
    pub proto: Protocol,
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
    /// `included[i]`: policy `i` (tier order) can match.
    pub included: Vec<bool>,
}

/// The dispatch classes of an endpoint whose policies (in tier order) have `reaches`:
/// every elementary port interval some policy reaches, adjacent ones with the same
/// policies merged, and none whose policies are those of the unkeyed rest (`rest`, the
/// second value), which the endpoint chain itself holds.
pub fn classes(reaches: &[&Reach]) -> (Vec<Class>, Vec<bool>) {
    let rest: Vec<bool> = reaches.iter().map(|r| r.rest).collect();
    let mut out: Vec<Class> = Vec::new();
    for proto in KEYED {
        // Interval boundaries: every range start and every end + 1.
        let mut cuts: Vec<u32> = reaches
            .iter()
            .filter_map(|r| r.ports.get(&proto))
            .flatten()
            .flat_map(|&(a, b)| [u32::from(a), u32::from(b) + 1])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        for pair in cuts.windows(2) {
            let (lo, hi) = (pair[0] as u16, (pair[1] - 1) as u16);
            let included: Vec<bool> = reaches.iter().map(|r| r.covers(proto, lo)).collect();
            if !included.iter().any(|&i| i) {
                continue;
            }
            match out.last_mut() {
                Some(last)
                    if last.proto == proto
                        && u32::from(last.hi) + 1 == u32::from(lo)
                        && last.included == included =>
                {
                    last.hi = hi;
                }
                _ => out.push(Class {
                    proto,
                    lo,
                    hi,
                    included,
                }),
            }
        }
    }
    out.retain(|c| c.included != rest);
    (out, rest)
}

/// `d.<hash>`: the name of a class chain with these rules.
pub fn class_chain_name(rules: &[String]) -> String {
    let mut hasher = Sha224::new();
    for r in rules {
        hasher.update(r.as_bytes());
        hasher.update(b"\n");
    }
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hasher.finalize());
    format!("d.{}", &hash[..20])
}

/// Up to this many ports in all, a dispatch map lists every port on its own: a map of
/// single keys is a hash in the kernel, where one range makes it an interval map
/// (pipapo), a costlier lookup for every new connection.
pub const MAX_EXPANDED_PORTS: u32 = 64;

/// The dispatch rule: `meta l4proto . th dport vmap { tcp . 80 : goto d.…, … }`, given
/// each class and its chain. Ranges are spelled out port by port while all of them come
/// to at most [`MAX_EXPANDED_PORTS`].
pub fn dispatch_rule(entries: &[(&Class, &str)]) -> String {
    let ports: u32 = entries
        .iter()
        .map(|(c, _)| u32::from(c.hi) - u32::from(c.lo) + 1)
        .sum();
    let expand = ports <= MAX_EXPANDED_PORTS;
    let mut elements: Vec<String> = Vec::new();
    for (c, chain) in entries {
        let proto = proto_name(c.proto);
        if c.lo == c.hi {
            elements.push(format!("{proto} . {} : goto {chain}", c.lo));
        } else if expand {
            for port in c.lo..=c.hi {
                elements.push(format!("{proto} . {port} : goto {chain}"));
            }
        } else {
            elements.push(format!("{proto} . {}-{} : goto {chain}", c.lo, c.hi));
        }
    }
    format!("meta l4proto . th dport vmap {{ {} }}", elements.join(", "))
}

#[cfg(test)]
mod tests {
    use bulkhead_api::values::TierDefaultAction;

    use super::*;
    use crate::render::{TierChains, endpoint_chains};
    use crate::tag::Tagging;
    use crate::test_policy::gnp;

    const TCP: Protocol = Protocol::TCP;
    const UDP: Protocol = Protocol::UDP;

    fn reach(ports: &[(Protocol, u16, u16)], rest: bool) -> Reach {
        let mut r = Reach {
            ports: BTreeMap::new(),
            rest,
        };
        for &(p, a, b) in ports {
            r.ports.entry(p).or_default().push((a, b));
        }
        for v in r.ports.values_mut() {
            merge(v);
        }
        r
    }

    /// The ingress reach of a GlobalNetworkPolicy with these ingress rules (YAML flow).
    fn reach_of(rules: &str) -> Reach {
        Reach::of(&gnp(&format!("ingress: {rules}")).ingress)
    }

    #[test]
    fn reach_of_compiled_rules() {
        // Numeric ports: exactly those, nothing the map does not key.
        assert_eq!(
            reach_of(
                "[{action: Allow, protocol: TCP, destination: {ports: [80, '8000:8080', 81]}}]"
            ),
            reach(&[(TCP, 80, 81), (TCP, 8000, 8080)], false)
        );
        // A named port, notPorts only, or no ports: every port of the protocol.
        for rule in [
            "[{action: Allow, protocol: UDP, destination: {ports: [dns]}}]",
            "[{action: Allow, protocol: UDP, destination: {notPorts: [53]}}]",
            "[{action: Deny, protocol: UDP}]",
        ] {
            assert_eq!(reach_of(rule), reach(&[(UDP, 0, 65535)], false), "{rule}");
        }
        // Another protocol reaches only what the map does not key.
        assert_eq!(
            reach_of("[{action: Allow, protocol: ICMP}]"),
            reach(&[], true)
        );
        // No protocol: everything.
        assert_eq!(
            reach_of("[{action: Pass, source: {nets: [10.0.0.0/8]}}]"),
            reach(
                &[(TCP, 0, 65535), (UDP, 0, 65535), (Protocol::SCTP, 0, 65535)],
                true
            )
        );
        // No rules: nothing.
        assert_eq!(reach_of("[]"), Reach::default());
    }

    #[test]
    fn merge_joins_overlapping_and_adjacent_ranges() {
        let mut v = vec![
            (10, 20),
            (5, 9),
            (30, 40),
            (35, 36),
            (41, 41),
            (65535, 65535),
        ];
        merge(&mut v);
        assert_eq!(v, vec![(5, 20), (30, 41), (65535, 65535)]);
    }

    #[test]
    fn classes_split_ports_by_the_policies_that_reach_them() {
        let a = reach(&[(TCP, 80, 80), (TCP, 8000, 8080)], false);
        let b = reach(&[(TCP, 8080, 9000)], false);
        let c = reach(&[], true);
        let (classes, rest) = classes(&[&a, &b, &c]);
        assert_eq!(rest, vec![false, false, true]);
        let got: Vec<(Protocol, u16, u16, Vec<bool>)> = classes
            .into_iter()
            .map(|c| (c.proto, c.lo, c.hi, c.included))
            .collect();
        assert_eq!(
            got,
            vec![
                (TCP, 80, 80, vec![true, false, false]),
                (TCP, 8000, 8079, vec![true, false, false]),
                (TCP, 8080, 8080, vec![true, true, false]),
                (TCP, 8081, 9000, vec![false, true, false]),
            ]
        );
    }

    #[test]
    fn a_class_with_the_rests_policies_needs_no_entry() {
        // Both policies reach everything: every class equals the rest.
        let any = reach(
            &[(TCP, 0, 65535), (UDP, 0, 65535), (Protocol::SCTP, 0, 65535)],
            true,
        );
        let (classes, rest) = classes(&[&any, &any]);
        assert!(classes.is_empty());
        assert_eq!(rest, vec![true, true]);
    }

    #[test]
    fn the_dispatch_rule_lists_few_ports_one_by_one_and_keeps_wide_ranges() {
        let class = |proto, lo, hi| Class {
            proto,
            lo,
            hi,
            included: vec![true],
        };
        let (one, few) = (class(TCP, 443, 443), class(UDP, 5000, 5002));
        assert_eq!(
            dispatch_rule(&[(&one, "d.a"), (&few, "d.b")]),
            "meta l4proto . th dport vmap { tcp . 443 : goto d.a, udp . 5000 : goto d.b, \
             udp . 5001 : goto d.b, udp . 5002 : goto d.b }"
        );
        // 1 + 64 ports: over the limit, so the range stays a range (an interval map).
        let wide = class(UDP, 6000, 6063);
        assert_eq!(
            dispatch_rule(&[(&one, "d.a"), (&wide, "d.b")]),
            "meta l4proto . th dport vmap { tcp . 443 : goto d.a, udp . 6000-6063 : goto d.b }"
        );
    }

    fn tier<'a>(name: &'a str, policies: &[(&str, &Reach)]) -> TierChains<'a> {
        TierChains {
            tier: name,
            default_action: TierDefaultAction::Deny,
            policies: policies
                .iter()
                .map(|(p, r)| (format!("p.{p}.in"), (*r).clone()))
                .collect(),
        }
    }

    #[test]
    fn an_endpoint_chain_dispatches_each_port_to_the_policies_that_reach_it() {
        let web = reach(&[(TCP, 80, 80)], false);
        let tls = reach(&[(TCP, 443, 443)], false);
        let ping = reach(&[], true);
        let tiers = [
            tier("security", &[("web", &web), ("ping", &ping)]),
            tier("default", &[("tls", &tls)]),
        ];
        let chains = endpoint_chains(&tiers, &[], "accept", true, Tagging::Off);
        // Port 80 reaches `web` only; 443 `tls` only; everything else `ping` only.
        assert_eq!(chains.classes.len(), 2);
        let body = |name: &str| -> Vec<String> {
            chains
                .classes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, rules)| rules.clone())
                .expect("class chain")
        };
        let vmap = &chains.rules[1];
        let target = |port: &str| -> String {
            let pattern = format!("tcp . {port} : goto ");
            let at = vmap.find(&pattern).expect("entry") + pattern.len();
            vmap[at..]
                .split([',', ' '])
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let jumps = |rules: &[String]| -> Vec<String> {
            rules
                .iter()
                .filter(|r| r.contains("jump p.") || r.contains("end of tier"))
                .cloned()
                .collect()
        };
        assert_eq!(
            jumps(&body(&target("80"))),
            [
                "jump p.web.in",
                "meta mark & 0x20000 == 0x0 drop comment \"end of tier security\"",
                "meta mark & 0x20000 == 0x0 drop comment \"end of tier default\""
            ]
        );
        assert_eq!(
            jumps(&body(&target("443"))),
            [
                "meta mark & 0x20000 == 0x0 drop comment \"end of tier security\"",
                "jump p.tls.in",
                "meta mark & 0x20000 == 0x0 drop comment \"end of tier default\""
            ]
        );
        // The endpoint chain itself: clear the marks, dispatch, then the rest.
        assert!(chains.rules[0].starts_with("meta mark set"));
        assert_eq!(
            jumps(&chains.rules[2..]),
            [
                "jump p.ping.in",
                "meta mark & 0x20000 == 0x0 drop comment \"end of tier security\"",
                "meta mark & 0x20000 == 0x0 drop comment \"end of tier default\""
            ]
        );
    }

    #[test]
    fn a_later_policy_keeps_its_pass_guard_only_behind_another_kept_policy() {
        let a = reach(&[(TCP, 80, 80)], false);
        let b = reach(&[(TCP, 80, 81)], false);
        let tiers = [tier("t", &[("a", &a), ("b", &b)])];
        let chains = endpoint_chains(&tiers, &[], "accept", true, Tagging::Off);
        let jumps_of = |name: &str| -> Vec<String> {
            chains
                .classes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, rules)| {
                    rules
                        .iter()
                        .filter(|r| r.contains("jump"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        let names: Vec<&String> = chains.classes.iter().map(|(n, _)| n).collect();
        let both = names
            .iter()
            .find(|n| jumps_of(n).len() == 2)
            .expect("class with both");
        assert_eq!(
            jumps_of(both),
            ["jump p.a.in", "meta mark & 0x20000 == 0x0 jump p.b.in"]
        );
        let only_b = names
            .iter()
            .find(|n| jumps_of(n).len() == 1)
            .expect("class with b");
        assert_eq!(jumps_of(only_b), ["jump p.b.in"]);
    }

    #[test]
    fn one_policy_is_not_dispatched() {
        let web = reach(&[(TCP, 80, 80)], false);
        let chains = endpoint_chains(
            &[tier("t", &[("web", &web)])],
            &[],
            "accept",
            true,
            Tagging::Off,
        );
        assert!(chains.classes.is_empty());
        assert!(chains.rules.iter().all(|r| !r.contains("vmap")));
    }

    #[test]
    fn class_chain_names_follow_the_rules() {
        let a = class_chain_name(&["jump p.x.in".into(), "drop".into()]);
        let b = class_chain_name(&["jump p.x.in".into(), "drop".into()]);
        let c = class_chain_name(&["jump p.y.in".into(), "drop".into()]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("d.") && a.len() == 22);
    }
}
