//! `Cluster::evaluate` of one flow over 100,000 endpoints and 10,000 policies in 20 tiers
//! (target: ≤ 2 µs median). One run measures:
//!
//! - `hot/evaluate`, `hot/verdict-only`: one flow, evaluated again and again (everything
//!   it touches is in the CPU caches);
//! - `warm/evaluate`: 1,024 random pod-to-pod flows in turn, whose endpoints' tier lists
//!   and rule-selector matches are already cached (the steady state of a long-lived
//!   model); the flows' data is mostly not in the CPU caches;
//! - `warm/verdict-only`: the same flows through `Cluster::verdict`, the same walk without
//!   recording the trace (what the connectivity matrix runs);
//! - `warm/evaluate-unindexed`: `warm/evaluate` on a model built without the selector
//!   index, to show the index plays no part once the lists are cached;
//! - `cold/evaluate`: the first evaluation of both endpoints (each flow's two endpoints
//!   were never seen), which computes and caches their tier lists and rule-selector
//!   matches through the selector indexes;
//! - `cold/evaluate-unindexed` (baseline): the same on `Cluster::build_unindexed`, which
//!   evaluates every policy's and every rule's selector against the endpoint, i.e. scans
//!   every policy.
//!
//! `cargo bench -p bulkhead-engine --bench evaluate`
//!
//! With `BULKHEAD_BENCH_PROFILE=1` it builds the model, evaluates the 1,024 warm flows
//! (filling the caches), runs them once through `profile_verdict` and once through
//! `profile_evaluate`, evaluates 512 flows between new endpoints through `profile_cold`,
//! and exits: for
//! instruction-level profiles that the machine's noise does not disturb, e.g.
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*profile_verdict*'`.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bulkhead_engine::compile::PolicyClass;
use bulkhead_engine::{Cluster, Flow, Mode, Verdict};
use criterion::{Criterion, criterion_group, criterion_main};

use common::{Rng, Shape};

const SHAPE: Shape = Shape {
    pods: 100_000,
    policies: 10_000,
    tiers: 20,
    namespaces: 0,
};

/// Random pod-to-pod TCP flows to port 8080.
fn random_flows(n: usize, seed: u64) -> Vec<Flow> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let (s, d) = (rng.below(SHAPE.pods), rng.below(SHAPE.pods));
            Flow::tcp(SHAPE.pod_ip(s), SHAPE.pod_ip(d), 8080)
        })
        .collect()
}

/// Flows whose endpoints are all distinct (a random permutation of the pods, in pairs), so
/// each evaluation finds both endpoints uncached.
fn cold_flows(seed: u64) -> Vec<Flow> {
    let mut rng = Rng::new(seed);
    let mut pods: Vec<usize> = (0..SHAPE.pods).collect();
    for i in (1..pods.len()).rev() {
        pods.swap(i, rng.below(i + 1));
    }
    pods.chunks_exact(2)
        .map(|p| Flow::tcp(SHAPE.pod_ip(p[0]), SHAPE.pod_ip(p[1]), 8080))
        .collect()
}

/// Evaluates fresh flows; clears the cache (untimed) whenever every endpoint has been seen.
fn cold(cluster: &mut Cluster, flows: &[Flow], next: &mut usize, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        if *next == flows.len() {
            cluster.clear_cache();
            *next = 0;
        }
        let n = left.min(flows.len() - *next);
        let batch = &flows[*next..*next + n];
        let start = Instant::now();
        for f in batch {
            black_box(cluster.evaluate(black_box(f)));
        }
        total += start.elapsed();
        *next += n;
        left -= n;
    }
    total
}

/// Heap blocks a side of a decision owns: its tier list and its trace. Names (endpoint,
/// tiers, policies) are shared with the model, not owned.
fn heap_blocks(side: &bulkhead_engine::SideOutcome) -> usize {
    usize::from(side.tiers.capacity() > 0) + usize::from(side.trace.capacity() > 0)
}

fn describe(cluster: &Cluster, flows: &[Flow]) {
    let mut allowed = 0;
    let (mut tiers, mut policies, mut hits, mut blocks) = (0, 0, 0, 0);
    for f in flows {
        let d = cluster.evaluate(f);
        assert_eq!(cluster.verdict(Mode::Enforced, f), d.verdict(), "{f}");
        allowed += usize::from(d.verdict() == Verdict::Allow);
        for (ip, ingress) in [(f.src, false), (f.dst, true)] {
            let applicable = cluster.applicable(ip, PolicyClass::Normal, ingress, Mode::Enforced);
            tiers += applicable.len();
            policies += applicable.iter().map(|(_, p)| p.len()).sum::<usize>();
        }
        hits += d.enforced.trace_strings().len();
        let pending = (d.pending() != &d.enforced).then(|| d.pending());
        blocks += std::iter::once(&d.enforced)
            .chain(pending)
            .flat_map(|o| [&o.egress, &o.ingress])
            .flatten()
            .map(heap_blocks)
            .sum::<usize>();
    }
    let n = flows.len() as f64;
    eprintln!(
        "workload: {} flows, {:.0}% allowed; per side {:.1} applicable tiers, {:.1} policies; \
         {:.1} trace hits per flow; a Decision owns {:.0} heap blocks on average",
        flows.len(),
        100.0 * allowed as f64 / n,
        tiers as f64 / (2.0 * n),
        policies as f64 / (2.0 * n),
        hits as f64 / n,
        blocks as f64 / n
    );
}

#[inline(never)]
fn profile_verdict(cluster: &Cluster, flows: &[Flow]) {
    for f in flows {
        black_box(cluster.verdict(Mode::Enforced, black_box(f)));
    }
}

#[inline(never)]
fn profile_evaluate(cluster: &Cluster, flows: &[Flow]) {
    for f in flows {
        black_box(cluster.evaluate(black_box(f)));
    }
}

#[inline(never)]
fn profile_cold(cluster: &Cluster, flows: &[Flow]) {
    for f in flows {
        black_box(cluster.evaluate(black_box(f)));
    }
}

fn evaluate(c: &mut Criterion) {
    let t = Instant::now();
    let resources = SHAPE.resources();
    eprintln!(
        "generated {} resources in {:.1?}",
        resources.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let mut indexed = Cluster::build(&resources).expect("valid model");
    eprintln!("built indexed model in {:.1?}", t.elapsed());
    let warm = random_flows(1024, 7);
    if std::env::var_os("BULKHEAD_BENCH_PROFILE").is_some() {
        drop(resources);
        for f in &warm {
            indexed.evaluate(f);
        }
        profile_verdict(&indexed, &warm);
        profile_evaluate(&indexed, &warm);
        let cold_list = cold_flows(11);
        profile_cold(&indexed, &cold_list[..512]);
        std::process::exit(0);
    }
    let t = Instant::now();
    let mut unindexed = Cluster::build_unindexed(&resources).expect("valid model");
    eprintln!("built unindexed model in {:.1?}", t.elapsed());
    drop(resources);

    for f in warm.iter().take(64) {
        assert_eq!(
            indexed.evaluate(f),
            unindexed.evaluate(f),
            "the index changed a decision for {f}"
        );
    }
    describe(&indexed, &warm);
    let cold_list = cold_flows(11);

    let mut g = c.benchmark_group("evaluate/100k-endpoints/10k-policies/20-tiers");
    let one = warm[0];
    g.bench_function("hot/evaluate", |b| {
        b.iter(|| indexed.evaluate(black_box(&one)))
    });
    g.bench_function("hot/verdict-only", |b| {
        b.iter(|| indexed.verdict(Mode::Enforced, black_box(&one)))
    });
    for (name, cluster) in [
        ("warm/evaluate", &indexed),
        ("warm/evaluate-unindexed", &unindexed),
    ] {
        for f in &warm {
            cluster.evaluate(f);
        }
        g.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let f = &warm[i % warm.len()];
                i += 1;
                cluster.evaluate(black_box(f))
            })
        });
    }
    g.bench_function("warm/verdict-only", |b| {
        let mut i = 0;
        b.iter(|| {
            let f = &warm[i % warm.len()];
            i += 1;
            indexed.verdict(Mode::Enforced, black_box(f))
        })
    });
    for (name, cluster) in [
        ("cold/evaluate", &mut indexed),
        ("cold/evaluate-unindexed", &mut unindexed),
    ] {
        cluster.clear_cache();
        let mut next = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| cold(cluster, &cold_list, &mut next, iters))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = evaluate
}
criterion_main!(benches);
