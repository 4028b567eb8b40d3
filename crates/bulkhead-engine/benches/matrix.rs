//! Connectivity matrix, every pod to every pod on one port: 1,000 pods, 1,000 policies in
//! 20 tiers (target: ≤ 1 s).
//!
//! Figures, one run:
//! - `connectivity/warm`: `Cluster::connectivity` (verdict-only walk, rows spread over
//!   the cores) on a model whose per-endpoint tier lists and rule-selector matches are
//!   cached (a second matrix on the same model);
//! - `connectivity/cold`: the same on a freshly built model, so the caches are filled
//!   during the measured call (the build itself is not timed);
//! - `evaluate-loop` (baseline): `Cluster::evaluate` for every pair, one thread, full
//!   decisions with traces, as a caller without the matrix API would do it.
//!
//! And the same for a dense variant (`/dense`: 5 namespaces, so about ten times as many
//! policies select each endpoint), whose baseline covers the first 100 rows only (a tenth
//! of the pairs) to keep the run short.
//!
//! `cargo bench -p bulkhead-engine --bench matrix`

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bulkhead_api::values::Protocol;
use bulkhead_engine::compile::PolicyClass;
use bulkhead_engine::{Cluster, Flow, Mode, Verdict};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use common::Shape;

const SHAPE: Shape = Shape {
    pods: 1_000,
    policies: 1_000,
    tiers: 20,
    namespaces: 0,
};

/// The same with 5 namespaces: 25 apps of 40 pods, so about 36 NetworkPolicies per app
/// (a heavily policied cluster: each endpoint is selected by about ten times as many
/// policies).
const DENSE: Shape = Shape {
    namespaces: 5,
    ..SHAPE
};

/// Builds `shape`, prints what it looks like, checks the matrix against `evaluate`, and
/// measures; the `evaluate` baseline runs over the first `baseline_rows` rows.
fn bench_shape(c: &mut Criterion, group: &str, shape: Shape, baseline_rows: usize) {
    let resources = shape.resources();
    let build = || Cluster::build(&resources).expect("valid model");
    let t = Instant::now();
    let cluster = build();
    eprintln!("{group}: built the model in {:.1?}", t.elapsed());
    let all: Vec<usize> = (0..cluster.endpoints().len()).collect();
    assert_eq!(all.len(), shape.pods);

    let m = cluster.connectivity(Mode::Enforced, &all, Protocol::TCP, 8080);
    let allowed = m.iter().flatten().filter(|&&v| v == Verdict::Allow).count();
    let (mut tiers, mut policies) = (0, 0);
    for e in cluster.endpoints() {
        for ingress in [false, true] {
            let applicable =
                cluster.applicable(e.ips[0], PolicyClass::Normal, ingress, Mode::Enforced);
            tiers += applicable.len();
            policies += applicable.iter().map(|(_, p)| p.len()).sum::<usize>();
        }
    }
    let sides = 2.0 * all.len() as f64;
    eprintln!(
        "{group}: {} pairs, {:.1}% allowed; per side {:.1} applicable tiers, {:.1} policies",
        all.len() * all.len(),
        100.0 * allowed as f64 / (all.len() * all.len()) as f64,
        tiers as f64 / sides,
        policies as f64 / sides
    );
    // Spot-check against evaluate (the unit test checks every cell on a small cluster).
    for i in (0..all.len()).step_by(97) {
        for j in (0..all.len()).step_by(89) {
            let (s, d) = (cluster.endpoints()[i].ips[0], cluster.endpoints()[j].ips[0]);
            let flow = Flow::tcp(s, d, 8080);
            assert_eq!(m[i][j], cluster.evaluate(&flow).verdict(), "{flow}");
        }
    }

    let mut g = c.benchmark_group(group);
    g.bench_function("connectivity/warm", |b| {
        b.iter(|| cluster.connectivity(Mode::Enforced, black_box(&all), Protocol::TCP, 8080))
    });
    g.bench_function("connectivity/cold", |b| {
        b.iter_batched(
            build,
            |fresh| fresh.connectivity(Mode::Enforced, black_box(&all), Protocol::TCP, 8080),
            BatchSize::PerIteration,
        )
    });
    let ips: Vec<_> = cluster.endpoints().iter().map(|e| e.ips[0]).collect();
    let name = if baseline_rows >= ips.len() {
        "evaluate-loop".to_string()
    } else {
        format!("evaluate-loop/first-{baseline_rows}-rows")
    };
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut allowed = 0usize;
            for &s in &ips[..baseline_rows.min(ips.len())] {
                for &d in &ips {
                    let decision = cluster.evaluate(&Flow::tcp(s, d, 8080));
                    allowed += usize::from(decision.verdict() == Verdict::Allow);
                }
            }
            allowed
        })
    });
    g.finish();
}

fn matrix(c: &mut Criterion) {
    bench_shape(c, "matrix/1k-pods/1k-policies/20-tiers", SHAPE, SHAPE.pods);
    bench_shape(c, "matrix/1k-pods/1k-policies/20-tiers/dense", DENSE, 100);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = matrix
}
criterion_main!(benches);
