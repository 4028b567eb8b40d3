//! Memory of a real `bulkhead agent` process: its resident set once it has programmed a
//! node sandbox, for growing clusters. The agent runs standalone (`--from-dir`) on
//! `bench apply`'s scenario (local endpoints, cluster endpoints and policies over 1,000
//! applications), written as one YAML file. The agent with neither cluster endpoints nor
//! policies is the baseline of the same run; the slope between two cluster sizes is the
//! memory per cluster endpoint, between two policy counts the memory per policy. The
//! agent's `nft` session (its child process) is reported beside it.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use bulkhead_dataplane::netlink::NfSocket;
use bulkhead_netns::{Netns, unique_name};

use super::apply::scenario;
use super::end_to_end::{Owned, Scratch, wait_for_sync, wait_until_empty};

/// One measured scenario.
#[derive(Debug, Clone)]
pub struct Point {
    /// Cluster endpoints (on other nodes).
    pub remote: usize,
    /// Policies in the cluster.
    pub policies: usize,
    /// How long the agent took from its start to its last transaction of the first sync.
    pub sync: Duration,
    /// The agent's resident set once synced (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// The agent's peak resident set (`VmHWM`), KiB.
    pub peak_kib: u64,
    /// The resident sets of the agent's child processes (its `nft` session), KiB.
    pub children_kib: u64,
}

/// Measures every combination of `remotes` and `policies`, each with a fresh agent (of
/// the bulkhead binary `exe`), scratch directory and node sandbox.
pub fn run(
    exe: &std::path::Path,
    local: usize,
    remotes: &[usize],
    policies: &[usize],
    distinct: bool,
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for &remote in remotes {
        for &p in policies {
            eprintln!("{local} local endpoints, {remote} cluster endpoints, {p} policies");
            points.push(measure(exe, local, remote, p, distinct)?);
        }
    }
    Ok(points)
}

/// Starts an agent on a fresh sandbox and reads its memory once it has synced.
fn measure(
    exe: &std::path::Path,
    local: usize,
    remote: usize,
    policies: usize,
    distinct: bool,
) -> anyhow::Result<Point> {
    let dir = Scratch(std::env::temp_dir().join(unique_name("bench-memory")));
    let resources = dir.0.join("resources");
    std::fs::create_dir_all(&resources)
        .with_context(|| format!("creating {}", resources.display()))?;
    let mut text = scenario(local, remote, policies);
    if distinct {
        text = with_pod_names(&text);
    }
    std::fs::write(resources.join("scenario.yaml"), text).context("writing the scenario")?;
    let ns = Netns::create(&unique_name("bench-memory"))?;
    let point = (|| {
        let mut generation = NfSocket::open_in(ns.path())
            .context("opening a netlink socket in the node namespace")?;
        let agent = Owned(
            Command::new(exe)
                .args([
                    "agent",
                    "--node",
                    "bench",
                    "--netns",
                    ns.name(),
                    "--from-dir",
                ])
                .arg(&resources)
                .args(["--resync-secs", "3600", "--state-dir"])
                .arg(dir.0.join("agent"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting bulkhead agent")?,
        );
        let sync = wait_for_sync(&mut generation)?;
        let pid = agent.0.id();
        let own = status(pid)?;
        let children_kib = children(pid)
            .iter()
            .filter_map(|&c| status(c).ok())
            .map(|s| s.rss_kib)
            .sum();
        Ok(Point {
            remote,
            policies,
            sync,
            rss_kib: own.rss_kib,
            peak_kib: own.peak_kib,
            children_kib,
        })
    })();
    wait_until_empty(&ns);
    point
}

/// `text` with every endpoint labelled with its own name
/// (`statefulset.kubernetes.io/pod-name`, as Kubernetes labels a StatefulSet's pods), so
/// that no two endpoints share their labels: the worst case for interning.
fn with_pod_names(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        let name = line
            .strip_prefix("metadata: {name: ")
            .and_then(|rest| rest.split_once(','))
            .map(|(name, _)| name)
            .filter(|_| line.contains("labels: {"));
        match name {
            Some(name) => out.push_str(&line.replacen(
                "labels: {",
                &format!("labels: {{statefulset.kubernetes.io/pod-name: {name}, "),
                1,
            )),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A process's resident set and its peak, KiB.
pub(super) struct Status {
    /// `VmRSS`.
    pub(super) rss_kib: u64,
    /// `VmHWM`.
    pub(super) peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/PID/status`.
pub(super) fn status(pid: u32) -> anyhow::Result<Status> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("{path} has no {name}"))
    };
    Ok(Status {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// The processes whose parent is `pid` (from `/proc/*/status`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent = format!("PPid:\t{pid}");
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/status"))
                .is_ok_and(|s| s.lines().any(|l| l == parent))
        })
        .collect()
}

/// The growth of `memory` (KiB) per unit of `unit` between the smallest and largest value
/// of `unit` among points that agree on everything else (`group`): one
/// `(group value, KiB per unit)` per group with two or more distinct sizes.
pub fn slopes(
    points: &[Point],
    unit: fn(&Point) -> usize,
    group: fn(&Point) -> usize,
    memory: fn(&Point) -> u64,
) -> Vec<(usize, f64)> {
    let mut groups: Vec<usize> = points.iter().map(group).collect();
    groups.sort_unstable();
    groups.dedup();
    groups
        .into_iter()
        .filter_map(|g| {
            let mut same: Vec<&Point> = points.iter().filter(|p| group(p) == g).collect();
            same.sort_by_key(|p| unit(p));
            let (first, last) = (same.first()?, same.last()?);
            let span = unit(last).checked_sub(unit(first)).filter(|&s| s > 0)?;
            Some((
                g,
                (memory(last) as f64 - memory(first) as f64) / span as f64,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(remote: usize, policies: usize, rss_kib: u64) -> Point {
        Point {
            remote,
            policies,
            sync: Duration::ZERO,
            rss_kib,
            peak_kib: rss_kib,
            children_kib: 0,
        }
    }

    #[test]
    fn slopes_span_the_smallest_and_largest_size_of_each_group() {
        let points = [
            point(0, 0, 10_000),
            point(50_000, 0, 60_000),
            point(0, 10_000, 20_000),
            point(25_000, 10_000, 30_000),
            point(50_000, 10_000, 120_000),
        ];
        let per_endpoint = slopes(&points, |p| p.remote, |p| p.policies, |p| p.rss_kib);
        assert_eq!(per_endpoint, vec![(0, 1.0), (10_000, 2.0)]);
        let per_policy = slopes(&points, |p| p.policies, |p| p.remote, |p| p.rss_kib);
        // 25,000 endpoints were measured at one policy count only: no slope.
        assert_eq!(per_policy, vec![(0, 1.0), (50_000, 6.0)]);
    }

    #[test]
    fn status_reads_this_process() {
        let s = status(std::process::id()).expect("own status");
        assert!(s.rss_kib > 0 && s.peak_kib >= s.rss_kib);
    }

    #[test]
    fn pod_names_make_every_endpoint_label_set_distinct() {
        let text = with_pod_names(&scenario(2, 3, 1));
        let loaded = bulkhead_api::load_str("s.yaml", &text).expect("still loads");
        let mut names = 0;
        for l in &loaded {
            if let bulkhead_api::Resource::WorkloadEndpoint(w) = &l.resource {
                let label = w.metadata.labels.get("statefulset.kubernetes.io/pod-name");
                assert_eq!(label, Some(&w.metadata.name));
                names += 1;
            }
        }
        assert_eq!(names, 5);
    }
}
