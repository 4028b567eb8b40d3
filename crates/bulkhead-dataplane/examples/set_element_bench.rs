//! Time to add and to remove one set element: one netlink batch against `nft -f -`,
//! measured in the same run, interleaved, in a throwaway network namespace.
//!
//! ```text
//! sudo cargo run --release -p bulkhead-dataplane --example set_element_bench [RUNS]
//! ```
//!
//! For each set (an `ipv4_addr` interval set of 1,000 and of 10,000 /32 prefixes, an
//! `ipv4_addr` hash set of 10,000 addresses, and an
//! `ipv4_addr . inet_proto . inet_service` set of 10,000 elements) and each of RUNS
//! rounds (default 200), every method adds one element and then removes it again; the
//! table printed (markdown, for docs/perf.md) gives the median and p90 of each operation
//! and the ratio of the medians to the `ip netns exec nft` baseline.
//! Methods:
//! * `netlink`: [`NfSocket::send`] on a socket opened once (what the agent does).
//! * `netlink, new socket each time`: thread, `setns`, socket, send, close.
//! * `Dataplane::apply`: the whole apply path, diff included, going over netlink.
//! * `nft -f -`: `nft` spawned from a thread inside the namespace.
//! * `ip netns exec nft -f -`: what `CommandRunner` ran for every change before.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_dataplane::netlink::{ElementChange, ElementOp, NfSocket, parse_elements};
use bulkhead_dataplane::table::{Set, SetKind};
use bulkhead_dataplane::{CommandRunner, Dataplane, NftRunner, Table};
use bulkhead_netns::Netns;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    if let Err(e) = bulkhead_netns::preflight() {
        eprintln!("skipped: needs root and ip netns ({e})");
        return;
    }
    let ns = Netns::create(&format!("bh-nl-{}-bench", std::process::id())).expect("netns");
    let nft_version = ns
        .exec_ok("nft", ["--version"])
        .unwrap_or_default()
        .trim()
        .to_string();
    println!(
        "{nft_version}, kernel {}, {runs} rounds, median / p90 in ms\n",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "| set | method | add median | add p90 | remove median | remove p90 | add, remove vs `ip netns exec nft` |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (kind, size) in [
        (SetKind::Ipv4, 1_000u32),
        (SetKind::Ipv4, 10_000),
        (SetKind::Ipv4Hosts, 10_000),
        (SetKind::Ipv4Port, 10_000),
    ] {
        bench_set(&ns, kind, size, runs);
    }
}

/// Element `i` of a set of `kind`, as nft text.
fn element(kind: SetKind, base: u32, i: u32) -> String {
    let ip = std::net::Ipv4Addr::from(base + i);
    match kind {
        SetKind::Ipv4Port => format!("{ip} . tcp . 8080"),
        SetKind::Ipv4Hosts => ip.to_string(),
        _ => format!("{ip}/32"),
    }
}

fn base_table(kind: SetKind, size: u32) -> Table {
    let mut t = Table::default();
    let elements = (0..size).map(|i| element(kind, 0x0a41_0000, i)).collect(); // 10.65.0.0 + i
    t.sets.insert("s_a".into(), Set { kind, elements });
    t
}

fn one(kind: SetKind, op: ElementOp, i: usize) -> (ElementChange, String, String) {
    let text = element(kind, 0x0ac8_0000, i as u32); // 10.200.0.0 + i
    let verb = match op {
        ElementOp::Add => "add",
        ElementOp::Delete => "delete",
    };
    (
        ElementChange {
            op,
            set: "s_a".into(),
            elements: parse_elements(kind, &[&text], false).expect("element"),
        },
        format!("{verb} element inet bulkhead s_a {{ {text} }}\n"),
        text,
    )
}

fn nft_in_thread(ns: &Netns, script: &str) {
    let ok = ns
        .run_in(|| {
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .spawn()
                .expect("nft");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())
                .expect("write");
            child.wait().expect("wait").success()
        })
        .expect("thread in netns");
    assert!(ok, "nft failed: {script}");
}

const METHODS: [&str; 5] = [
    "netlink",
    "netlink, new socket each time",
    "`Dataplane::apply` (netlink)",
    "`nft -f -`",
    "`ip netns exec nft -f -`",
];

fn bench_set(ns: &Netns, kind: SetKind, size: u32, runs: usize) {
    let base = base_table(kind, size);
    let label = match kind {
        SetKind::Ipv4 => format!("`ipv4_addr` interval, {size}"),
        SetKind::Ipv4Hosts => format!("`ipv4_addr` hash, {size}"),
        _ => format!("`ipv4_addr . inet_proto . inet_service`, {size}"),
    };
    let mut nft_runner = CommandRunner::in_netns(ns.name()).without_netlink();
    nft_runner.run(&base.load_script()).expect("load");
    let mut socket = NfSocket::open_in(ns.path()).expect("socket");
    let mut dp = Dataplane::new(CommandRunner::in_netns(ns.name()));
    dp.apply(base.clone()).expect("dataplane load");

    let mut add: Vec<Vec<Duration>> = vec![Vec::new(); METHODS.len()];
    let mut del: Vec<Vec<Duration>> = vec![Vec::new(); METHODS.len()];
    for round in 0..runs {
        for (m, (adds, dels)) in add.iter_mut().zip(del.iter_mut()).enumerate() {
            let i = round * METHODS.len() + m;
            let (add_change, add_script, text) = one(kind, ElementOp::Add, i);
            let (del_change, del_script, _) = one(kind, ElementOp::Delete, i);
            let mut with = base.clone();
            with.sets.get_mut("s_a").expect("set").elements.insert(text);
            let step = |f: &mut dyn FnMut()| {
                let t = Instant::now();
                f();
                t.elapsed()
            };
            let (a, d) = match m {
                0 => (
                    step(&mut || socket.send(std::slice::from_ref(&add_change)).expect("add")),
                    step(&mut || {
                        socket
                            .send(std::slice::from_ref(&del_change))
                            .expect("delete")
                    }),
                ),
                1 => (
                    step(&mut || {
                        NfSocket::open_in(ns.path())
                            .and_then(|mut s| s.send(std::slice::from_ref(&add_change)))
                            .expect("add")
                    }),
                    step(&mut || {
                        NfSocket::open_in(ns.path())
                            .and_then(|mut s| s.send(std::slice::from_ref(&del_change)))
                            .expect("delete")
                    }),
                ),
                2 => {
                    // The tables are made before the clock starts: the caller renders
                    // them anyway; `apply` takes them by value.
                    let (mut with, mut without) = (Some(with.clone()), Some(base.clone()));
                    (
                        step(&mut || {
                            let t = with.take().expect("once");
                            let r = dp.apply(t).expect("apply").expect("change");
                            assert!(r.netlink);
                        }),
                        step(&mut || {
                            let t = without.take().expect("once");
                            let r = dp.apply(t).expect("apply").expect("change");
                            assert!(r.netlink);
                        }),
                    )
                }
                3 => (
                    step(&mut || nft_in_thread(ns, &add_script)),
                    step(&mut || nft_in_thread(ns, &del_script)),
                ),
                _ => (
                    step(&mut || nft_runner.run(&add_script).expect("add")),
                    step(&mut || nft_runner.run(&del_script).expect("delete")),
                ),
            };
            adds.push(a);
            dels.push(d);
        }
    }
    let add_base = percentile(&mut add[METHODS.len() - 1].clone(), 50);
    let del_base = percentile(&mut del[METHODS.len() - 1].clone(), 50);
    for (m, name) in METHODS.iter().enumerate() {
        let (a50, a90) = (percentile(&mut add[m], 50), percentile(&mut add[m], 90));
        let (d50, d90) = (percentile(&mut del[m], 50), percentile(&mut del[m], 90));
        println!(
            "| {label} | {name} | {} | {} | {} | {} | {:.3}, {:.3} |",
            ms(a50),
            ms(a90),
            ms(d50),
            ms(d90),
            a50.as_secs_f64() / add_base.as_secs_f64(),
            d50.as_secs_f64() / del_base.as_secs_f64()
        );
    }
}

fn percentile(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v[(v.len() - 1) * p / 100]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.3}")
    } else {
        format!("{ms:.2}")
    }
}
