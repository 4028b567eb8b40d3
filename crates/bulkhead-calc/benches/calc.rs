//! One endpoint label change on a large cluster: the calc graph (`apply` + `flush`)
//! against the from-scratch path (`Cluster::build` + `render`), in the same run.
//!
//! The cluster: 50,000 pods in 20 namespaces (500 `app` values, 3 `tier`s, 4
//! `version`s), 200 of them on the benchmarked node; 10,000 policies in 5 tiers (9,000
//! NetworkPolicies selecting one `app` each, with a rule selector and a named port; 1,000
//! GlobalNetworkPolicies selecting `tier` and `version`, with nets and a namespace
//! selector). The change relabels one pod's `app` back and forth, so every iteration
//! is a real change: for a local pod its tier list, its chains, the policy chains it
//! starts and stops using and their sets all change; for a remote pod, set members.
//!
//! Results go to `docs/perf.md` ("## Calc").

use std::hint::black_box;
use std::time::Duration;

use bulkhead_api::k8s::{Container, ContainerPort, PodIp, PodSpec, PodStatus};
use bulkhead_api::{LabelMap, ObjectMeta, PodObject, Resource, load_str};
use bulkhead_calc::{CalcGraph, NodeConfig, Update};
use bulkhead_dataplane::RenderConfig;
use bulkhead_dataplane::render::{local_endpoints, render};
use bulkhead_engine::Cluster;
use criterion::{Criterion, criterion_group, criterion_main};

const ENDPOINTS: usize = 50_000;
const POLICIES: usize = 10_000;
const LOCAL: usize = 200;
const NAMESPACES: usize = 20;
const APPS: usize = 500;
const NODE: &str = "node-a";

fn pod(i: usize, app: usize) -> Resource {
    let labels: LabelMap = [
        ("app".to_string(), format!("app{app}")),
        (
            "tier".to_string(),
            ["frontend", "backend", "db"][i % 3].to_string(),
        ),
        ("version".to_string(), format!("v{}", i % 4)),
    ]
    .into_iter()
    .collect();
    let ip = format!("10.{}.{}.{}", 1 + (i >> 16), (i >> 8) & 255, i & 255);
    Resource::Pod(PodObject {
        metadata: ObjectMeta {
            name: format!("pod{i}"),
            namespace: Some(format!("ns{}", i % NAMESPACES)),
            labels,
            ..ObjectMeta::default()
        },
        spec: PodSpec {
            node_name: Some(if i < LOCAL {
                NODE.to_string()
            } else {
                format!("node-{}", i % 250)
            }),
            containers: vec![Container {
                name: "c".into(),
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..ContainerPort::default()
                }],
            }],
            ..PodSpec::default()
        },
        status: PodStatus {
            pod_ip: Some(ip.clone()),
            pod_ips: vec![PodIp { ip }],
        },
    })
}

fn resources() -> Vec<Resource> {
    let mut yaml = String::new();
    for n in 0..NAMESPACES {
        let env = if n % 2 == 0 { "prod" } else { "dev" };
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{n}, labels: {{env: {env}}}}}\n---\n"
        ));
    }
    for t in 0..5 {
        let action = if t % 2 == 0 { "Pass" } else { "Deny" };
        yaml.push_str(&format!(
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: tier{t}}}\nspec: {{order: {}, defaultAction: {action}}}\n---\n",
            (t + 1) * 100
        ));
    }
    for j in 0..POLICIES {
        let tier = format!("tier{}", j % 5);
        if j % 10 == 9 {
            yaml.push_str(&format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g{j}}}\nspec:\n  tier: {tier}\n  order: {}\n  selector: tier == 'backend' && version == 'v{}'\n  namespaceSelector: env == 'prod'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source: {{nets: [10.{}.0.0/16]}}\n    destination: {{ports: [443]}}\n  egress:\n  - action: Deny\n    destination: {{notNets: [10.0.0.0/8]}}\n---\n",
                j % 97,
                j % 4,
                j % 200
            ));
        } else {
            let app = j % APPS;
            yaml.push_str(&format!(
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p{j}, namespace: ns{}}}\nspec:\n  tier: {tier}\n  order: {}\n  selector: app == 'app{app}'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source: {{selector: app == 'app{}'}}\n    destination: {{ports: [http]}}\n  egress:\n  - action: Allow\n    destination: {{selector: tier == 'db'}}\n---\n",
                app % NAMESPACES,
                j % 89,
                (j * 7 + 3) % APPS
            ));
        }
    }
    let mut out: Vec<Resource> = load_str("bench", &yaml)
        .expect("bench resources load")
        .into_iter()
        .map(|l| l.resource)
        .collect();
    out.extend((0..ENDPOINTS).map(|i| pod(i, i % APPS)));
    out
}

fn config() -> NodeConfig {
    NodeConfig {
        node: NODE.into(),
        render: RenderConfig::default(),
    }
}

fn bench(c: &mut Criterion) {
    let mut resources = resources();
    let mut graph = CalcGraph::new(config());
    let loaded = std::time::Instant::now();
    for r in &resources {
        graph.apply(Update::Upsert(r.clone()));
    }
    graph.flush();
    eprintln!(
        "initial load of {} resources: {:?}; {:?}",
        resources.len(),
        loaded.elapsed(),
        graph.stats()
    );
    // The pods come after the namespaces, tiers and policies.
    let first_pod = resources.len() - ENDPOINTS;
    // Where the from-scratch time goes (one run of each half).
    let config = config();
    let started = std::time::Instant::now();
    let cluster = Cluster::build(&resources).expect("bench cluster builds");
    let built = started.elapsed();
    let local = local_endpoints(&resources, NODE, &config.render.workload_prefix);
    let started = std::time::Instant::now();
    let table = render(&cluster, &local, &config.render);
    eprintln!(
        "from scratch, once: Cluster::build {built:?}, render {:?} ({} chains, {} sets)",
        started.elapsed(),
        table.chains.len(),
        table.sets.len()
    );
    drop((cluster, table));
    let mut group = c.benchmark_group(format!(
        "calc_{}k-endpoints_{}k-policies_{LOCAL}-local",
        ENDPOINTS / 1000,
        POLICIES / 1000
    ));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (what, index) in [("local", 0usize), ("remote", 10_007)] {
        let mut flip = false;
        group.bench_function(format!("label_change_{what}/incremental"), |b| {
            b.iter(|| {
                flip = !flip;
                let app = if flip {
                    (index + 1) % APPS
                } else {
                    index % APPS
                };
                graph.apply(Update::Upsert(pod(index, app)));
                black_box(graph.flush())
            })
        });
    }
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    let mut flip = false;
    group.bench_function("label_change_local/from_scratch", |b| {
        b.iter(|| {
            flip = !flip;
            resources[first_pod] = pod(0, usize::from(flip));
            let cluster = Cluster::build(&resources).expect("bench cluster builds");
            let local = local_endpoints(&resources, NODE, &config.render.workload_prefix);
            black_box(render(&cluster, &local, &config.render))
        })
    });
    group.finish();
    // Both ways end in the same table, as the property test demands at every size.
    resources[first_pod] = pod(0, 0);
    resources[first_pod + 10_007] = pod(10_007, 10_007 % APPS);
    for r in [&resources[first_pod], &resources[first_pod + 10_007]] {
        graph.apply(Update::Upsert(r.clone()));
    }
    graph.flush();
    let cluster = Cluster::build(&resources).expect("bench cluster builds");
    let local = local_endpoints(&resources, NODE, &config.render.workload_prefix);
    assert!(*graph.table() == render(&cluster, &local, &config.render));
    eprintln!("incremental table == from-scratch table: yes");
}

criterion_group!(benches, bench);
criterion_main!(benches);
