//! The rendered tables are valid for the real kernel: every script passes `nft -c` (a
//! check transaction that changes nothing) inside a throwaway network namespace, and a
//! load followed by diffs applies for real there.

use std::io::Write;
use std::process::{Command, Stdio};

use bulkhead_api::{Resource, load_paths, load_str};
use bulkhead_dataplane::table::{Chain, Set, SetKind, Table, diff};
use bulkhead_dataplane::{CommandRunner, Dataplane, LocalEndpoint, RenderConfig, render};
use bulkhead_engine::failsafe::Failsafe;
use bulkhead_engine::host_defaults::EndpointToHost;
use bulkhead_engine::{Cluster, EndpointKind};

/// A network namespace for one test, deleted on drop.
struct Scratch(String);

impl Scratch {
    fn new(tag: &str) -> Option<Scratch> {
        let name = format!("bh-dptest-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        let nft = Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok || !nft {
            eprintln!("skipped: needs root, ip netns and nft");
            return None;
        }
        Some(Scratch(name))
    }

    fn nft(&self, args: &[&str], script: &str) -> Result<(), String> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(script.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The resources of the repository's `path`.
fn resources(path: &str) -> Vec<Resource> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    let loaded = load_paths(&[format!("{root}{path}")]).expect("example loads");
    loaded.into_iter().map(|l| l.resource).collect()
}

fn cluster(path: &str) -> Cluster {
    Cluster::build(&resources(path)).expect("example builds")
}

fn all_local(cluster: &Cluster) -> Vec<LocalEndpoint> {
    cluster
        .endpoints()
        .iter()
        .enumerate()
        .map(|(i, e)| match (e.kind, &e.namespace) {
            (EndpointKind::Workload, Some(ns)) => {
                LocalEndpoint::workload(ns, &e.name, &format!("bh{i:04}"))
            }
            _ => LocalEndpoint::host(&e.name, "*"),
        })
        .collect()
}

#[test]
fn the_brief_example_renders_to_a_table_the_kernel_accepts_and_applies() {
    let Some(ns) = Scratch::new("brief") else {
        return;
    };
    let c = cluster("examples/brief");
    let table = render(&c, &all_local(&c), &RenderConfig::default());
    assert!(table.chains.contains_key("p.gnp.deny-app-policy.out"));
    assert!(table.sets.keys().any(|s| s.starts_with("s4_")));
    let script = table.load_script();
    ns.nft(&["-c", "-f", "-"], &script)
        .unwrap_or_else(|e| panic!("{e}\n{script}"));

    let mut dp = Dataplane::new(CommandRunner::in_netns(&ns.0));
    let first = dp.apply(table.clone()).expect("load").expect("applied");
    assert!(first.full);
    // Dropping a workload changes the dispatch maps and known interfaces only.
    let mut fewer = all_local(&c);
    fewer.pop();
    let smaller = render(&c, &fewer, &RenderConfig::default());
    let (script, stats) = diff(&table, &smaller).expect("a change");
    assert!(stats.chains > 0 || stats.elements > 0, "{script}");
    let second = dp.apply(smaller).expect("diff applies").expect("applied");
    assert!(!second.full);
}

#[test]
fn host_defaults_render_to_rules_the_kernel_accepts() {
    let Some(ns) = Scratch::new("hostdef") else {
        return;
    };
    // The brief's resources and a host endpoint, whose chains hold the failsafe ports.
    let mut resources = resources("examples/brief");
    let hep = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: node}\nspec: {node: n1, interfaceName: eth0}\n";
    resources.extend(
        load_str("hep.yaml", hep)
            .expect("valid")
            .into_iter()
            .map(|l| l.resource),
    );
    let c = Cluster::build(&resources).expect("builds");
    let mut config = RenderConfig::default();
    config.host_defaults.endpoint_to_host = EndpointToHost::Drop;
    config.host_defaults.failsafe = Failsafe {
        inbound: Failsafe::parse_ports("tcp:22,tcp:10.0.0.0/8:2222,udp:[fd00::/8]:53")
            .expect("valid"),
        outbound: Failsafe::parse_ports("udp:192.0.2.53:53,tcp:2001:db8::/32:443").expect("valid"),
    };
    let table = render(&c, &all_local(&c), &config);
    assert!(table.chains.contains_key("wl_to_host"));
    assert!(
        table.chains["failsafe.out"]
            .rules
            .iter()
            .any(|r| r.contains("ip6 daddr 2001:db8::/32")),
        "{:?}",
        table.chains["failsafe.out"]
    );
    let script = table.load_script();
    ns.nft(&["-f", "-"], &script)
        .unwrap_or_else(|e| panic!("{e}\n{script}"));
}

#[test]
fn a_failed_transaction_leaves_the_previous_rules() {
    let Some(ns) = Scratch::new("fail") else {
        return;
    };
    let c = cluster("examples/brief");
    let table = render(&c, &all_local(&c), &RenderConfig::default());
    let mut dp = Dataplane::new(CommandRunner::in_netns(&ns.0));
    dp.apply(table.clone()).expect("load");
    let mut broken = table.clone();
    broken
        .chains
        .get_mut("forward")
        .expect("forward chain")
        .rules
        .push("this is not nft".into());
    assert!(dp.apply(broken).is_err());
    let listed = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "list", "chain", "inet", "bulkhead", "forward",
        ])
        .output()
        .expect("nft list");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("vmap @wl_from"),
        "previous forward chain still there:\n{text}"
    );
}

#[test]
fn a_set_changing_kind_is_replaced_under_the_rules_that_use_it() {
    let Some(ns) = Scratch::new("retype") else {
        return;
    };
    let table = |kind, elements: &[&str]| {
        let mut t = Table::default();
        t.sets.insert(
            "s4_x".into(),
            Set {
                kind,
                elements: elements.iter().map(|e| e.to_string()).collect(),
            },
        );
        // Chain `c` exists beside the hash set only: it goes away, or comes, in the same
        // transaction as the set's kind changes.
        let mut chains = vec![("a", "ip saddr @s4_x accept"), ("b", "ip daddr @s4_x drop")];
        if kind == SetKind::Ipv4Hosts {
            chains.push(("c", "ip saddr @s4_x counter"));
        }
        for (name, rule) in chains {
            t.chains.insert(
                name.into(),
                Chain {
                    hook: None,
                    rules: vec![rule.into()],
                },
            );
        }
        t
    };
    let hosts = table(SetKind::Ipv4Hosts, &["10.65.0.1", "10.65.0.2"]);
    let prefixes = table(SetKind::Ipv4, &["10.65.0.0/24", "198.18.0.0/15"]);
    let mut dp = Dataplane::new(CommandRunner::in_netns(&ns.0));
    dp.apply(hosts.clone()).expect("load");
    for (want, declared) in [
        (&prefixes, "flags interval"),
        (&hosts, "type ipv4_addr"),
        (&prefixes, "198.18.0.0/15"),
    ] {
        let applied = dp
            .apply(want.clone())
            .expect("diff applies")
            .expect("a change");
        assert!(!applied.full, "a diff, not a reload");
        let listed = Command::new("ip")
            .args([
                "netns", "exec", &ns.0, "nft", "list", "table", "inet", "bulkhead",
            ])
            .output()
            .expect("nft list");
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(text.contains(declared), "{declared} in:\n{text}");
        assert_eq!(
            text.contains("flags interval"),
            want.sets["s4_x"].kind == SetKind::Ipv4,
            "{text}"
        );
        assert!(text.contains("ip saddr @s4_x accept"), "{text}");
        assert!(text.contains("ip daddr @s4_x drop"), "{text}");
    }
}
