//! `load_str` of 10,000 policies as one multi-document YAML string (target: ≥ 50,000
//! policies/s on one core).
//!
//! Figures, one run, on the same text:
//! - `load_str`: split, parse, type, default and validate every document;
//! - `yaml-to-value` (baseline): only the YAML parsing step as serde-saphyr does it, each
//!   document to a `serde_json::Value`, which `load_str` needs anyway;
//! - `yaml-fast-to-value`: the same step by the fast path that `load_str` now uses (every
//!   document of the bench takes it); the difference to `load_str` is the cost of
//!   splitting, typing and validating.
//!
//! `cargo bench -p bulkhead-api --bench load`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/policies.rs"]
mod policies;

const POLICIES: usize = 10_000;

fn load(c: &mut Criterion) {
    let text = policies::policies_yaml(POLICIES);
    let loaded = match bulkhead_api::load_str("bench.yaml", &text) {
        Ok(loaded) => loaded,
        Err(e) => panic!(
            "generated policies are invalid: {:?}",
            &e.0[..e.0.len().min(3)]
        ),
    };
    assert_eq!(loaded.len(), POLICIES);
    eprintln!("{POLICIES} policies, {} bytes of YAML", text.len());
    let documents: Vec<&str> = text.split("---\n").filter(|d| !d.is_empty()).collect();
    assert_eq!(documents.len(), POLICIES);

    let mut g = c.benchmark_group("load/10k-policies");
    g.throughput(Throughput::Elements(POLICIES as u64));
    g.bench_function("load_str", |b| {
        b.iter(|| bulkhead_api::load_str("bench.yaml", black_box(&text)).map(|l| l.len()))
    });
    g.bench_function("yaml-to-value", |b| {
        b.iter(|| {
            documents
                .iter()
                .map(|d| {
                    bulkhead_api::yaml::from_str::<serde_json::Value>(black_box(d))
                        .map(|_| 1)
                        .unwrap_or(0)
                })
                .sum::<usize>()
        })
    });
    g.bench_function("yaml-fast-to-value", |b| {
        b.iter(|| {
            documents
                .iter()
                .map(|d| usize::from(bulkhead_api::yaml::fast_value(black_box(d)).is_some()))
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = load
}
criterion_main!(benches);
