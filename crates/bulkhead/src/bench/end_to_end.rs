//! End to end: a change written to a real `bulkhead server` until the kernel of a node
//! runs it, through the server's store, its watch stream and a real `bulkhead agent`
//! process (list and watch, calc graph, diff, nft). `bench apply` times the agent's part
//! in one process; this adds everything in front of it.
//!
//! The clock starts before the write request and stops when the node's nf_tables
//! generation moves (`NFT_MSG_GETGEN` polled every 100 µs on a netlink socket in the
//! node's namespace; the kernel counts every committed transaction and the agent commits
//! each change as one). The write's own round trip is reported beside it as the baseline.
//! The scenario is `bench apply`'s: local endpoints, cluster endpoints and policies over
//! 1,000 applications; a policy change moves a policy that selects local endpoints to
//! another port, a label change moves a remote endpoint to another application.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_api::Resource;
use bulkhead_client::Client;
use bulkhead_dataplane::netlink::NfSocket;
use bulkhead_netns::{Netns, unique_name};

use super::apply::{Latencies, policy, resources};

/// Threads uploading the scenario.
const UPLOADERS: usize = 8;
/// How long one change may take to reach the kernel before the run fails.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take for its first full sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// A process this bench started, ended (by its own handle) when dropped.
pub(super) struct Owned(pub(super) Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory removed when dropped.
pub(super) struct Scratch(pub(super) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `changes` policy changes and `changes` label changes through a server and an
/// agent; returns (policy change, label change, write round trip) latencies.
pub fn run(
    local: usize,
    remote: usize,
    policies: usize,
    changes: usize,
) -> anyhow::Result<[Latencies; 3]> {
    let dir = Scratch(std::env::temp_dir().join(unique_name("bench-e2e")));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    let exe = std::env::current_exe().context("finding the bulkhead binary")?;
    let addr = {
        let probe = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        probe.local_addr()?
    };
    let url = format!("http://{addr}");
    let data = dir.0.join("server");
    let _server = Owned(
        Command::new(&exe)
            .args(["server", "--listen", &addr.to_string(), "--data-dir"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bulkhead server")?,
    );
    let token = wait_for_token(&data.join("admin.token"), &url)?;

    let state = resources(local, remote, policies)?;
    upload(&url, &token, &state)?;

    let ns = Netns::create(&unique_name("bench-e2e"))?;
    let agent_args = Agent {
        exe: &exe,
        url: &url,
        token: &token,
        state_dir: dir.0.join("agent"),
    };
    let result = measure(&ns, &agent_args, state, local, remote, changes);
    wait_until_empty(&ns);
    result
}

/// Once the agent is gone, its `nft -i` session ends when its input closes: gives it a
/// moment, so that the namespace goes with nothing left in it.
pub(super) fn wait_until_empty(ns: &Netns) {
    let end = Instant::now() + Duration::from_secs(2);
    while ns.pids().is_ok_and(|p| !p.is_empty()) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How to start the agent.
struct Agent<'a> {
    exe: &'a Path,
    url: &'a str,
    token: &'a str,
    state_dir: PathBuf,
}

/// Starts the agent on `ns`, waits for its first sync, then times the changes; the agent
/// is ended on the way out.
fn measure(
    ns: &Netns,
    agent: &Agent<'_>,
    mut state: Vec<Resource>,
    local: usize,
    remote: usize,
    changes: usize,
) -> anyhow::Result<[Latencies; 3]> {
    let mut generation =
        NfSocket::open_in(ns.path()).context("opening a netlink socket in the node namespace")?;
    let agent_process = Owned(
        Command::new(agent.exe)
            .args(["agent", "--node", "bench", "--netns", ns.name()])
            .args(["--server", agent.url, "--token", agent.token])
            .args(["--resync-secs", "3600", "--state-dir"])
            .arg(&agent.state_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting bulkhead agent")?,
    );
    wait_for_sync(&mut generation)?;
    let memory = super::memory::status(agent_process.0.id())?;
    eprintln!(
        "agent resident set once synced: {:.1} MiB (peak {:.1} MiB)",
        memory.rss_kib as f64 / 1024.0,
        memory.peak_kib as f64 / 1024.0
    );

    let client = Client::new(agent.url, Some(agent.token))?;
    let (mut policy_changes, mut label_changes, mut writes) = (vec![], vec![], vec![]);
    for i in 0..changes {
        let changed = i % local.clamp(1, 1000);
        if let Some(r) = super::apply::load(&policy(changed, 1000 + i as u16))?.pop() {
            state[local + remote + changed] = r.clone();
            let (enforced, written) = timed_change(&client, &mut generation, &r)?;
            policy_changes.push(enforced);
            writes.push(written);
        }
        if let Some(Resource::WorkloadEndpoint(w)) = state.get_mut(local + i % remote.max(1)) {
            let app = super::apply::moved_app(i, local, w.metadata.labels.get("app"));
            w.metadata.labels.insert("app".into(), app);
            let moved = Resource::WorkloadEndpoint(w.clone());
            let (enforced, written) = timed_change(&client, &mut generation, &moved)?;
            label_changes.push(enforced);
            writes.push(written);
        }
    }
    Ok([
        Latencies {
            what: "policy change: API write -> enforced in the node's kernel",
            samples: policy_changes,
        },
        Latencies {
            what: "one label change: API write -> sets updated in the node's kernel",
            samples: label_changes,
        },
        Latencies {
            what: "baseline: the API write alone (request -> response)",
            samples: writes,
        },
    ])
}

/// Waits for the server's admin token and for the server to answer with it.
fn wait_for_token(path: &Path, url: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(token) = std::fs::read_to_string(path) {
            let token = token.trim().to_string();
            if !token.is_empty() && Client::new(url, Some(&token))?.whoami().is_ok() {
                return Ok(token);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not come up within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates every resource, from several threads (the server commits each write).
fn upload(url: &str, token: &str, resources: &[Resource]) -> anyhow::Result<()> {
    let done = AtomicUsize::new(0);
    let chunk = resources.len().div_ceil(UPLOADERS).max(1);
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = resources
            .chunks(chunk)
            .map(|part| {
                let done = &done;
                s.spawn(move || -> anyhow::Result<()> {
                    let client = Client::new(url, Some(token))?;
                    for r in part {
                        client
                            .create(r)
                            .with_context(|| format!("creating {}", r.key()))?;
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_multiple_of(10_000) {
                            eprintln!(
                                "uploaded {n} of {} resources ({:.0} s)",
                                resources.len(),
                                started.elapsed().as_secs_f64()
                            );
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("an upload thread panicked"))??;
        }
        Ok(())
    })
}

/// Waits until the agent programmed the node: the generation moved and then stayed
/// still for 2 s. Returns how long the agent took (to its last transaction).
pub(super) fn wait_for_sync(generation: &mut NfSocket) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let first = generation.generation()?;
    let (mut last, mut since) = (first, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = generation.generation()?;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if last != first && since.elapsed() >= Duration::from_secs(2) {
            let took = since - start;
            eprintln!("agent synced in {:.1} s", took.as_secs_f64());
            return Ok(took);
        }
        anyhow::ensure!(
            start.elapsed() < SYNC_TIMEOUT,
            "the agent did not program the node within {} s",
            SYNC_TIMEOUT.as_secs()
        );
    }
}

/// Writes `r` and waits for the node's next transaction: (write → enforced, write round
/// trip).
fn timed_change(
    client: &Client,
    generation: &mut NfSocket,
    r: &Resource,
) -> anyhow::Result<(Duration, Duration)> {
    let before = generation.generation()?;
    let start = Instant::now();
    client
        .replace(r)
        .with_context(|| format!("replacing {}", r.key()))?;
    let written = start.elapsed();
    loop {
        if generation.generation()? != before {
            return Ok((start.elapsed(), written));
        }
        anyhow::ensure!(
            start.elapsed() < CHANGE_TIMEOUT,
            "{} was not enforced within {} s",
            r.key(),
            CHANGE_TIMEOUT.as_secs()
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}
