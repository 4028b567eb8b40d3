use super::*;
use std::collections::BTreeMap;

use bulkhead_engine::host_defaults::{EndpointToHost, HostDefaults};

use crate::tag::RuleTag;
use crate::test_policy::gnp;

/// A profile's ingress rules, compiled from YAML flow.
fn ingress(rules: &str) -> Vec<Rule> {
    let text = format!(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {{name: p}}\nspec:\n  ingress: {rules}\n"
    );
    let loaded = bulkhead_api::load_str("test.yaml", &text).expect("valid profile");
    let bulkhead_api::Resource::Profile(p) = &loaded[0].resource else {
        panic!("not a profile");
    };
    bulkhead_engine::incremental::profile(p)
        .expect("compiles")
        .ingress
}

#[test]
fn only_an_unconditional_allow_first_allows_everything() {
    assert!(allows_everything(&ingress("[{action: Allow}]")));
    assert!(allows_everything(&ingress(
        "[{action: Allow}, {action: Deny, protocol: TCP}]"
    )));
    for rules in [
        "[]",
        "[{action: Allow, protocol: TCP}]",
        "[{action: Allow, source: {nets: [10.0.0.0/8]}}]",
        "[{action: Allow, destination: {selector: app == 'x'}}]",
        "[{action: Allow, ipVersion: 4}]",
        "[{action: Log}, {action: Allow}]",
        "[{action: Deny}]",
    ] {
        assert!(!allows_everything(&ingress(rules)), "{rules}");
    }
}

#[test]
fn untracked_and_pre_dnat_allows_mark_and_accept_in_their_hook() {
    let rule = "ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]";
    let allow = |extra: &str| {
        let policy = gnp(extra);
        let chain = policy_chain(
            &policy,
            policy.class,
            true,
            Tagging::On,
            &mut SetRequests::new(),
        );
        // One rule for both address families: it matches no address.
        assert_eq!(chain.rules.len(), 1, "{:?}", chain.rules);
        chain.rules[0].clone()
    };
    let untracked = allow(&format!("doNotTrack: true, applyOnForward: true, {rule}"));
    assert!(
        untracked.contains("notrack meta mark set meta mark | 0x10000 accept"),
        "{untracked}"
    );
    let pre_dnat = allow(&format!("preDNAT: true, applyOnForward: true, {rule}"));
    assert!(
        pre_dnat.contains("meta mark set meta mark | 0x10000 accept"),
        "{pre_dnat}"
    );
    assert!(!pre_dnat.contains("notrack"), "{pre_dnat}");
    let normal = allow(rule);
    assert!(
        normal.contains("group 1 accept") && !normal.contains("mark"),
        "{normal}"
    );
    // An applyOnForward policy's ingress rules, as forwarded traffic meets them, mark and
    // return (the destination's ingress follows), in a chain of their own.
    let policy = gnp(&format!("applyOnForward: true, {rule}"));
    let forwarded = policy_chain(
        &policy,
        PolicyClass::Forward,
        true,
        Tagging::Off,
        &mut SetRequests::new(),
    );
    assert!(
        forwarded.rules[0].contains("meta mark set meta mark | 0x10000 return"),
        "{:?}",
        forwarded.rules
    );
    let names = policy_chain_names(&policy.id);
    assert_eq!(
        policy_chain_name(&policy.id, PolicyClass::Forward, true),
        names[2]
    );
    assert_eq!(names[2], "p.gnp.g.fwd.in");
    assert_eq!(
        policy_chain_name(&policy.id, PolicyClass::Forward, false),
        policy_chain_name(&policy.id, PolicyClass::Normal, false),
        "egress chains are the same for both"
    );
}

#[test]
fn forwarded_chains_allow_by_default_and_drop_when_every_tier_passed() {
    assert!(forwarded_chain(&[], true, Tagging::Off).is_empty());
    let tiers = [TierChains {
        tier: "t",
        default_action: TierDefaultAction::Pass,
        policies: vec![("p.1".to_string(), Reach::of(&[]))],
    }];
    assert_eq!(
        forwarded_chain(&tiers, true, Tagging::Off),
        [
            "meta mark set meta mark & 0xfffcffff",
            "jump p.1",
            "meta mark & 0x10000 == 0x10000 return",
            "meta mark set meta mark & 0xfffdffff",
            "drop comment \"no applyOnForward policy allowed it\"",
        ]
    );
    let out = forwarded_chain(&tiers, false, Tagging::Off);
    assert_eq!(out[2], "meta mark & 0x10000 == 0x10000 accept");
}

#[test]
fn early_chains_end_every_tier_in_pass_and_have_no_profiles() {
    let tier = |name, policies: &[&str]| TierChains {
        tier: name,
        default_action: TierDefaultAction::Deny,
        policies: policies
            .iter()
            .map(|p| (p.to_string(), Reach::of(&[])))
            .collect(),
    };
    let tiers = [tier("a", &["p.1", "p.2"]), tier("b", &["p.3"])];
    let rules = early_chain(&tiers, false, Tagging::On);
    // Each tier ends by logging its Pass (egress group), never by dropping; no accept
    // mark tests after the jumps (early policy chains accept by themselves).
    let pass = |t: &str| {
        let eot = TaggedRule::EndOfTier { tier: t.into() };
        let tag = RuleTag::new(&eot, TagVerdict::Pass, false);
        format!("meta mark & 0x20000 == 0x0 {}", tag.statement())
    };
    assert_eq!(
        rules,
        [
            "meta mark set meta mark & 0xfffcffff".to_string(),
            "jump p.1".into(),
            "meta mark & 0x20000 == 0x0 jump p.2".into(),
            pass("a"),
            "meta mark set meta mark & 0xfffdffff".into(),
            "jump p.3".into(),
            pass("b"),
            "meta mark set meta mark & 0xfffdffff".into(),
        ]
    );
    assert!(pass("a").contains("group 2"));
}

#[test]
fn host_base_chains_run_each_class_in_its_hook() {
    let host = LocalEndpoint::host("h", "*");
    let named = LocalEndpoint::host("g", "eth1");
    let chains: BTreeMap<String, Chain> = host_base_chains(
        &resolve_host_endpoints(&[&host, &named], &RenderConfig::default()),
        &RenderConfig::default(),
    )
    .into_iter()
    .collect();
    let last = |name: &str| chains[name].rules.last().cloned().unwrap_or_default();
    assert_eq!(chains["raw_prerouting"].hook, Some(Hook::RawPrerouting));
    // Untracked policies do not apply to the `*` endpoint: the named one's are last.
    assert_eq!(
        last("raw_prerouting"),
        "iifname \"eth1\" goto h.g.untracked.in"
    );
    assert_eq!(
        last("raw_output"),
        "oifname \"eth1\" goto h.g.untracked.out"
    );
    assert_eq!(last("mangle_prerouting"), "goto h.h.prednat.in");
    assert_eq!(last("input"), "goto h.h.in");
    assert_eq!(last("output"), "goto h.h.out");
    // The named interface goes to its own endpoint's chains, and only there: `goto`, so
    // `*`'s pre-DNAT policies do not run when `g`'s decide nothing.
    for (name, rule) in [
        ("mangle_prerouting", "iifname \"eth1\" goto h.g.prednat.in"),
        ("input", "iifname \"eth1\" goto h.g.in"),
        ("output", "oifname \"eth1\" goto h.g.out"),
    ] {
        let rules = &chains[name].rules;
        assert_eq!(rules[rules.len() - 2], rule, "{name}");
    }
    // The filter hooks honour an earlier Allow before the host's own chains.
    for name in ["mangle_prerouting", "input", "output"] {
        assert!(
            chains[name]
                .rules
                .contains(&"meta mark & 0x10000 == 0x10000 accept".to_string()),
            "{name}"
        );
    }
    assert_eq!(chains.len(), HOST_BASE_CHAINS.len());
    // Forwarded traffic: pre-DNAT, then applyOnForward in and out; named interfaces first,
    // and `*` stands for any interface but a workload's.
    assert_eq!(
        chains["mangle_forwarded"].rules,
        [
            "iifname \"eth1\" goto h.g.prednat.in",
            "iifname != \"bh*\" goto h.h.prednat.in"
        ]
    );
    assert_eq!(
        chains[FROM_HOST].rules,
        [
            "iifname \"eth1\" goto h.g.fwd.in",
            "iifname != \"bh*\" goto h.h.fwd.in"
        ]
    );
    assert_eq!(
        chains[TO_HOST].rules[..2],
        ["oif 0 return", "oifname \"eth1\" goto h.g.fwd.out"]
    );
    // Traffic between the host and its own workloads skips the host's chains.
    for (name, skip) in [
        ("raw_prerouting", "iifname \"bh*\" accept"),
        ("raw_output", "oifname \"bh*\" accept"),
        ("mangle_prerouting", "iifname \"bh*\" accept"),
        ("input", "iifname \"bh*\" accept"),
        ("output", "oifname \"bh*\" accept"),
    ] {
        assert!(chains[name].rules.contains(&skip.to_string()), "{name}");
    }
    assert!(
        chains["mangle_prerouting"]
            .rules
            .contains(&"fib daddr type != local goto mangle_forwarded".to_string())
    );
}

#[test]
fn one_host_endpoint_governs_an_interface_and_expected_ips_find_theirs() {
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
    let by_ip = |name: &str, ips: &[&str]| LocalEndpoint {
        expected_ips: ips.iter().map(|s| ip(s)).collect(),
        ..LocalEndpoint::host(name, "")
    };
    let host_interfaces = [
        ("eth0", vec!["10.66.0.1", "fd00::1"]),
        ("eth1", vec!["10.66.1.1"]),
        ("eth2", vec!["10.66.2.1"]),
        ("lo", vec!["127.0.0.1"]),
        ("bh1234", vec!["169.254.1.1"]),
    ]
    .into_iter()
    .map(|(i, ips)| (i.to_string(), ips.into_iter().map(ip).collect()))
    .collect();
    let config = RenderConfig {
        host_interfaces,
        ..RenderConfig::default()
    };
    let a = by_ip("a", &["fd00::1"]); // eth0, by its IPv6 address
    let b = LocalEndpoint::host("b", "eth0"); // loses eth0 to a: later name
    let c = by_ip("c", &["10.66.1.1", "10.66.2.1"]); // two interfaces
    let d = LocalEndpoint::host("d", "eth2"); // loses eth2 to c
    let e = by_ip("e", &["192.0.2.1"]); // no interface holds it: governs nothing
    let f = by_ip("f", &["127.0.0.1", "169.254.1.1"]); // never lo or a workload's
    let all = LocalEndpoint::host("z", "*");
    let all2 = LocalEndpoint::host("zz", "*");
    let hosts = [&all2, &f, &e, &d, &c, &b, &a, &all];
    let dispatch = resolve_host_endpoints(&hosts, &config);
    let governed: Vec<(&str, &str)> = dispatch
        .interfaces
        .iter()
        .map(|(i, h)| (i.as_str(), h.name.as_str()))
        .collect();
    assert_eq!(governed, [("eth0", "a"), ("eth1", "c"), ("eth2", "c")]);
    assert_eq!(dispatch.all.map(|h| h.name.as_str()), Some("z"));
    // Unknown addresses (no interfaces read yet): only named interfaces are governed.
    let dispatch = resolve_host_endpoints(&hosts, &RenderConfig::default());
    let governed: Vec<&str> = dispatch.interfaces.keys().map(String::as_str).collect();
    assert_eq!(governed, ["eth0", "eth2"]);
}

#[test]
fn failsafe_chains_list_the_configured_ports() {
    let host = LocalEndpoint::host("h", "eth0");
    let config = RenderConfig {
        host_defaults: HostDefaults {
            failsafe: bulkhead_engine::failsafe::Failsafe {
                inbound: bulkhead_engine::failsafe::Failsafe::parse_ports(
                    "tcp:2222,udp:10.1.2.3/8:53,tcp:[fd00::/8]:22",
                )
                .expect("valid"),
                outbound: Vec::new(),
            },
            ..HostDefaults::default()
        },
        ..RenderConfig::default()
    };
    let chains: BTreeMap<String, Chain> =
        host_base_chains(&resolve_host_endpoints(&[&host], &config), &config)
            .into_iter()
            .collect();
    assert_eq!(
        chains["failsafe.in"].rules,
        [
            "meta l4proto tcp th dport 2222 accept",
            "meta l4proto udp th dport 53 ip saddr 10.0.0.0/8 accept",
            "meta l4proto tcp th dport 22 ip6 saddr fd00::/8 accept",
        ]
    );
    assert!(chains["failsafe.out"].rules.is_empty());
    // The raw output chain lets the replies of inbound failsafe connections by.
    for reply in [
        "meta l4proto tcp th sport 2222 accept",
        "meta l4proto udp th sport 53 ip daddr 10.0.0.0/8 accept",
    ] {
        assert!(
            chains["raw_output"].rules.contains(&reply.to_string()),
            "{reply}"
        );
    }
}

#[test]
fn endpoint_to_host_drop_drops_what_the_workload_egress_allows() {
    let chains = |action: EndpointToHost| -> BTreeMap<String, Chain> {
        let config = RenderConfig {
            host_defaults: HostDefaults {
                endpoint_to_host: action,
                ..HostDefaults::default()
            },
            ..RenderConfig::default()
        };
        dispatch_chains(&config, false).into_iter().collect()
    };
    let accept = chains(EndpointToHost::Accept);
    assert_eq!(
        accept[WORKLOAD_INPUT].rules[3..],
        ["iifname vmap @wl_from", "iifname \"bh*\" drop"]
    );
    assert!(!accept.contains_key(WL_TO_HOST));
    assert_eq!(
        chains(EndpointToHost::Return),
        accept,
        "Return is Accept here"
    );
    let drop = chains(EndpointToHost::Drop);
    // The egress chain runs inside a jump, so its allow comes back to the drop.
    assert_eq!(
        drop[WORKLOAD_INPUT].rules[3..],
        ["iifname \"bh*\" jump wl_to_host", "iifname \"bh*\" drop"]
    );
    assert_eq!(drop[WL_TO_HOST].rules, ["iifname vmap @wl_from"]);
    assert_eq!(drop[WL_TO_HOST].hook, None);
    // Conntrack and neighbour discovery still come first, and forwarding is the same.
    assert_eq!(
        drop[WORKLOAD_INPUT].rules[..3],
        accept[WORKLOAD_INPUT].rules[..3]
    );
    assert_eq!(drop["forward"], accept["forward"]);
}
