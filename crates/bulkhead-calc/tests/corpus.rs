//! The conformance corpus as calc-graph state sequences: every step of every case
//! (resources applied, deleted, relabelled; pods added and removed) is fed to one graph
//! as the updates between the previous step's resources and this step's, and after each
//! step the graph's table must equal the from-scratch one. Every pod and host of a case is
//! put on the graph's node, so every chain the corpus can produce is rendered.
//!
//! Skips (and says so) when the corpus is not next to the repository.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bulkhead_api::{Resource, ResourceKey};
use bulkhead_conformance::fixture::Fixture;
use bulkhead_conformance::{Backend, EvalBackend, ProbeRequest, RunOptions};
use bulkhead_engine::{Cluster, Verdict};
use common::{Harness, NODE};

/// Checks the graph at every step; probes answer with the engine.
#[derive(Default)]
struct CalcBackend {
    harness: Option<Harness>,
    steps: usize,
}

fn on_node(r: &Resource) -> Resource {
    let mut r = r.clone();
    match &mut r {
        Resource::Pod(p) => p.spec.node_name = Some(NODE.into()),
        Resource::HostEndpoint(h) => h.spec.node = NODE.into(),
        Resource::WorkloadEndpoint(w) => w.spec.node = NODE.into(),
        _ => {}
    }
    r
}

impl Backend for CalcBackend {
    fn name(&self) -> &'static str {
        "calc"
    }

    fn sync(&mut self, fixture: &Fixture, _cluster: &Cluster) -> Result<(), String> {
        let h = self.harness.get_or_insert_with(Harness::default);
        let want: BTreeMap<ResourceKey, Resource> =
            fixture.resources().map(|r| (r.key(), on_node(r))).collect();
        let gone: Vec<ResourceKey> = h
            .store
            .keys()
            .filter(|k| !want.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            h.delete(&k);
        }
        for (k, r) in want {
            if h.store.get(&k) != Some(&r) {
                h.upsert(r);
            }
        }
        h.check(&format!("corpus step {}", self.steps));
        self.steps += 1;
        Ok(())
    }

    fn probe(
        &mut self,
        cluster: &Cluster,
        requests: &[ProbeRequest],
    ) -> Result<Vec<Verdict>, String> {
        EvalBackend.probe(cluster, requests)
    }

    fn finish(&mut self) {
        self.harness = None;
    }
}

#[test]
fn every_corpus_step_renders_as_from_scratch() {
    let corpus = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance"
    ));
    if !corpus.is_dir() {
        eprintln!("skipped: no conformance corpus at {}", corpus.display());
        return;
    }
    let mut backend = CalcBackend::default();
    let mut out = Vec::new();
    let report =
        bulkhead_conformance::run(&[corpus], &mut backend, &RunOptions::default(), &mut out)
            .expect("corpus runs");
    let (passed, failed, _) = report.counts();
    assert_eq!(failed, 0, "{}", String::from_utf8_lossy(&out));
    assert!(
        passed > 100 && backend.steps > 150,
        "{passed} cases, {} steps",
        backend.steps
    );
}
