//! The agent's loop: restore from cache, then take changes, compute, program, check.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bulkhead_calc::{CalcGraph, NodeConfig, Update};
use bulkhead_dataplane::{CommandRunner, Dataplane, RenderConfig, Table, Touched};
use bulkhead_engine::failsafe::format_ports;
use bulkhead_engine::host_defaults::{HostDefaults, HostDefaultsLayer};

use crate::interfaces::AddressWatch;
use crate::metrics::Metrics;
use crate::server_source::ServerSource;
use crate::source::DirSource;
use crate::{cache, drift, interfaces};

/// Where an agent's resources come from.
#[derive(Debug)]
pub enum Source {
    /// A watched directory.
    Dir(DirSource),
    /// The server (list and watch).
    Server(ServerSource),
}

impl Source {
    /// `None` if nothing changed; otherwise what changed, or why the resources are
    /// unusable.
    pub fn poll(&mut self) -> Option<Result<Vec<Update>, bulkhead_api::LoadErrors>> {
        match self {
            Source::Dir(s) => s.poll(),
            Source::Server(s) => s.poll(),
        }
    }

    /// Waits up to `timeout` for something to take: the server's watch streams wake the
    /// agent as soon as a change arrives; a directory is only looked at again after the
    /// whole interval.
    pub fn wait(&mut self, timeout: Duration) {
        match self {
            Source::Dir(_) => std::thread::sleep(timeout),
            Source::Server(s) => s.wait(timeout),
        }
    }
}

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name (endpoints with this node are local).
    pub node: String,
    /// Directory of resources to enforce (unused by [`Agent::with_source`]).
    pub from_dir: PathBuf,
    /// Program the table in this named network namespace instead of the agent's own.
    pub netns: Option<String>,
    /// Where the cache lives (`None`: no cache).
    pub state_dir: Option<PathBuf>,
    /// How often a directory source is checked for changes; the longest wait between
    /// steps (a server source wakes the agent as soon as a change arrives).
    pub poll: Duration,
    /// How often the kernel table is read back and compared.
    pub resync: Duration,
    /// Naming of the node's interfaces.
    pub render: RenderConfig,
    /// Settings that win over the node's FelixConfigurations (the agent's flags).
    pub host_defaults: HostDefaultsLayer,
}

impl AgentConfig {
    /// An agent for node `node` that enforces `from_dir` in the node sandbox `netns`,
    /// whose workload interfaces are named `cali…` (as `bulkhead-netns` names them); the
    /// CLI's defaults otherwise: no cache, a poll every 100 ms, a read-back every 10 s,
    /// no settings over the node's FelixConfigurations.
    pub fn for_sandbox(node: &str, netns: &str, from_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            node: node.to_string(),
            from_dir: from_dir.into(),
            netns: Some(netns.to_string()),
            state_dir: None,
            poll: Duration::from_millis(100),
            resync: Duration::from_secs(10),
            render: RenderConfig {
                workload_prefix: "cali".into(),
                ..RenderConfig::default()
            },
            host_defaults: HostDefaultsLayer::default(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed.
    Idle,
    /// A new table was programmed.
    Applied,
    /// The source changed but the table did not need to.
    Unchanged,
    /// The resources did not load; the last good state stays enforced.
    LoadFailed(String),
    /// The kernel rejected the transaction; the previous rules stay.
    ApplyFailed(String),
    /// The kernel's table differed from the intended one and was repaired.
    Repaired(String),
}

/// One node's agent.
pub struct Agent {
    config: AgentConfig,
    source: Source,
    dataplane: Dataplane<CommandRunner>,
    metrics: Arc<Metrics>,
    fingerprint: Option<String>,
    last_check: Instant,
    /// When the node's interface addresses were last read (`None`: not yet).
    interfaces_read: Option<Instant>,
    /// Which host endpoint governs which interface, as last reported.
    placement: Vec<(String, String)>,
    /// The node's failsafe ports and `DefaultEndpointToHostAction`, as last reported.
    host_defaults: Option<HostDefaults>,
    /// Announces the node's address changes, once a host endpoint depends on them.
    watch: Option<AddressWatch>,
    /// Whether opening the watch was tried (it is not retried).
    watch_tried: bool,
    calc: Calc,
    /// Programmed but not yet in the cache: since when, and the last change.
    unsaved: Option<(Instant, Instant)>,
}

/// The cache is written once changes paused this long...
const CACHE_QUIET: Duration = Duration::from_millis(100);
/// ...or, during a steady stream of changes, once the oldest unsaved one is this old.
const CACHE_MAX_DELAY: Duration = Duration::from_secs(1);

/// The incremental calculation of the node's table.
struct Calc {
    graph: CalcGraph,
    /// What the graph's flushes touched since its table was last programmed (everything
    /// while another table is installed): the dataplane's diff looks there alone.
    unprogrammed: Touched,
}

impl Calc {
    fn new(config: &AgentConfig) -> Calc {
        let mut graph = CalcGraph::new(NodeConfig {
            node: config.node.clone(),
            render: config.render.clone(),
        });
        graph.override_host_defaults(config.host_defaults.clone());
        Calc {
            graph,
            unprogrammed: Touched::everything(),
        }
    }

    /// Flushes the graph; whether its table changed.
    fn flush(&mut self) -> bool {
        let delta = self.graph.flush();
        self.unprogrammed.extend(&delta.touched());
        !delta.is_empty()
    }

    /// Feeds `updates` to the graph; the model errors, if any (then nothing may be
    /// programmed).
    fn update(&mut self, updates: Vec<Update>) -> Result<(), String> {
        for u in updates {
            self.graph.apply(u);
        }
        self.flush();
        let errors = self.graph.errors();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors
                .iter()
                .map(|(k, m)| format!("{k}: {m}"))
                .collect::<Vec<_>>()
                .join("; "))
        }
    }
}

impl Agent {
    /// An agent that has not touched the kernel yet, enforcing `config.from_dir`.
    pub fn new(config: AgentConfig, metrics: Arc<Metrics>) -> Agent {
        let source = Source::Dir(DirSource::new(&config.from_dir));
        Agent::with_source(config, source, metrics)
    }

    /// An agent taking its resources from `source` (`config.from_dir` is not used).
    pub fn with_source(config: AgentConfig, source: Source, metrics: Arc<Metrics>) -> Agent {
        let runner = match &config.netns {
            Some(ns) => CommandRunner::in_netns(ns),
            None => CommandRunner::here(),
        };
        Agent {
            calc: Calc::new(&config),
            source,
            dataplane: Dataplane::new(runner),
            metrics,
            fingerprint: None,
            last_check: Instant::now(),
            interfaces_read: None,
            placement: Vec::new(),
            host_defaults: None,
            watch: None,
            watch_tried: false,
            unsaved: None,
            config,
        }
    }

    /// Programs the cached table, if there is one: the first thing after a restart, before
    /// any resource is read, so enforcement has no gap. Returns whether it restored.
    pub fn restore(&mut self) -> Result<bool, String> {
        let Some(dir) = &self.config.state_dir else {
            return Ok(false);
        };
        let Some(table) = cache::load(dir)? else {
            return Ok(false);
        };
        self.program(Some(table)).map(|_| true)
    }

    /// Takes any change from the source and programs it; reads the table back when due.
    pub fn step(&mut self) -> Step {
        let step = match self.source.poll() {
            None => Step::Idle,
            Some(Err(errors)) => {
                self.metrics.load_failed();
                let message = errors.to_string();
                tracing::error!(%message, "resources did not load; keeping the last good state");
                Step::LoadFailed(message)
            }
            Some(Ok(updates)) => match self.desired(updates) {
                Err(message) => {
                    self.metrics.load_failed();
                    tracing::error!(%message, "resources do not form a valid model; keeping the last good state");
                    Step::LoadFailed(message)
                }
                Ok(()) => self.program_desired(),
            },
        };
        if step == Step::Idle && self.refresh_interfaces() {
            return self.program_desired();
        }
        if step == Step::Idle && self.last_check.elapsed() >= self.config.resync {
            return self.check_drift();
        }
        step
    }

    /// Programs the calc graph's table; what that did.
    fn program_desired(&mut self) -> Step {
        match self.program(None) {
            Ok(true) => Step::Applied,
            Ok(false) => Step::Unchanged,
            Err(e) => Step::ApplyFailed(e),
        }
    }

    /// Reads the node's interface addresses again if a host endpoint is placed by them
    /// and they may have changed: never read yet, a change announced by the watch, or the
    /// last read older than [`interfaces::RESYNC`] ([`interfaces::UNWATCHED`] when the
    /// watch could not be opened). True if the graph's table changed (it is flushed).
    fn refresh_interfaces(&mut self) -> bool {
        if !self.calc.graph.needs_host_interfaces() {
            return false;
        }
        // Opened before the first read, so that no change after it goes unannounced.
        if self.watch.is_none() && !self.watch_tried {
            self.watch_tried = true;
            match AddressWatch::open(self.config.netns.as_deref()) {
                Ok(w) => self.watch = Some(w),
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot watch the node's addresses; reading them every second"
                ),
            }
        }
        let announced = self.watch.as_ref().is_some_and(AddressWatch::changed);
        let every = if self.watch.is_some() {
            interfaces::RESYNC
        } else {
            interfaces::UNWATCHED
        };
        let due = self
            .interfaces_read
            .is_none_or(|t| announced || t.elapsed() >= every);
        if !due {
            return false;
        }
        self.interfaces_read = Some(Instant::now());
        match interfaces::read(self.config.netns.as_deref()) {
            Ok(found) => {
                if !self.calc.graph.set_host_interfaces(found) {
                    return false;
                }
                let changed = self.calc.flush();
                self.report_placement();
                changed
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the node's interface addresses");
                false
            }
        }
    }

    /// Writes the installed table to the cache if it changed since the last write and
    /// changes paused (`CACHE_QUIET`, 100 ms) or the oldest unsaved one is
    /// `CACHE_MAX_DELAY` (1 s) old; with `force`, whenever it changed. A restart therefore
    /// restores rules at most about a second older than the last ones programmed, and the
    /// live sync that follows brings them up to date.
    pub fn save_cache(&mut self, force: bool) {
        let Some((first, last)) = self.unsaved else {
            return;
        };
        if !force && last.elapsed() < CACHE_QUIET && first.elapsed() < CACHE_MAX_DELAY {
            return;
        }
        self.unsaved = None;
        if let (Some(dir), Some(installed)) = (&self.config.state_dir, self.dataplane.installed())
            && let Err(e) = cache::save(dir, installed)
        {
            tracing::warn!(error = %e, "could not write the cache");
        }
    }

    /// Computes the intended table after `updates` incrementally, in the calc graph.
    fn desired(&mut self, updates: Vec<Update>) -> Result<(), String> {
        self.calc.update(updates)?;
        // A host endpoint that just appeared is placed before its first programming.
        self.refresh_interfaces();
        self.metrics
            .local_endpoints(self.calc.graph.stats().local_endpoints);
        self.report_placement();
        self.report_host_defaults();
        Ok(())
    }

    /// Logs the node's settings around the policies when they change (the flags, then
    /// the FelixConfigurations `node.<node>` and `default`).
    fn report_host_defaults(&mut self) {
        let now = self.calc.graph.host_defaults();
        if self.host_defaults.as_ref() == Some(now) {
            return;
        }
        tracing::info!(
            failsafe_inbound = %format_ports(&now.failsafe.inbound),
            failsafe_outbound = %format_ports(&now.failsafe.outbound),
            default_endpoint_to_host_action = %now.endpoint_to_host,
            "host defaults"
        );
        self.host_defaults = Some(now.clone());
    }

    /// Logs and exports which host endpoint governs which interface, when that changed.
    fn report_placement(&mut self) {
        let placement = self.calc.graph.host_placement();
        if placement == self.placement.as_slice() {
            return;
        }
        let text: Vec<String> = placement.iter().map(|(i, h)| format!("{i}={h}")).collect();
        tracing::info!(placement = %text.join(" "), "host endpoints placed (interface=endpoint)");
        self.placement = placement.to_vec();
        self.metrics.host_endpoints(self.placement.clone());
    }

    /// Applies `given`, or without one the calc graph's table (borrowed, not copied);
    /// `Ok(false)` if it was already in place.
    fn program(&mut self, given: Option<Table>) -> Result<bool, String> {
        let table = given.as_ref().unwrap_or(self.calc.graph.table());
        let (rules, sets, elements) = (
            table.rule_count(),
            table.sets.len() + table.maps.len(),
            table.element_count(),
        );
        let everything = Touched::everything();
        let touched = match given {
            Some(_) => &everything,
            None => &self.calc.unprogrammed,
        };
        let result = self.dataplane.apply_within(table, touched);
        if result.is_ok() {
            // The installed table is now the graph's, or another one.
            self.calc.unprogrammed = match given {
                Some(_) => Touched::everything(),
                None => Touched::nothing(),
            };
        }
        match result {
            Ok(None) => {
                self.metrics.healthy();
                Ok(false)
            }
            Ok(Some(applied)) => {
                self.metrics
                    .applied(applied.duration, rules, sets, elements);
                tracing::info!(
                    full = applied.full,
                    duration = ?applied.duration,
                    rules,
                    elements,
                    "programmed"
                );
                // The table is read back at the next check, not here: listing a big
                // table takes long, and a burst of changes should not wait for it.
                self.fingerprint = None;
                self.last_check = Instant::now();
                // The cache is written after the change, when changes pause (see
                // `save_cache`): serialising and syncing a big table takes milliseconds,
                // which the next change of a burst should not wait for.
                let now = Instant::now();
                self.unsaved = Some((self.unsaved.map_or(now, |(first, _)| first), now));
                Ok(true)
            }
            Err(e) => {
                self.metrics.apply_failed();
                tracing::error!(error = %e, "programming failed; the previous rules stay");
                Err(e.to_string())
            }
        }
    }

    /// Reads the kernel's table back; on any difference, reloads the intended table and
    /// reports a tamper event. First, when no change is pending, checks that the
    /// installed table is the calc graph's (a delta that missed a change is caught here).
    pub fn check_drift(&mut self) -> Step {
        self.last_check = Instant::now();
        if self.dataplane.installed().is_none() {
            return Step::Idle;
        }
        if let Some(step) = self.check_installed() {
            return step;
        }
        let netns = self.config.netns.clone();
        match self.dataplane.untouched() {
            // Nothing was committed in the namespace since the last apply: the table is
            // Bulkhead's. The first such check after an apply takes the fingerprint that
            // later checks compare with (kept only if still nothing was committed).
            Some(true) => {
                if self.fingerprint.is_none() {
                    let taken = drift::fingerprint(netns.as_deref()).ok();
                    if self.dataplane.untouched() == Some(true) {
                        self.fingerprint = taken;
                    }
                }
                return Step::Idle;
            }
            // The generation cannot be read: the first check takes the fingerprint.
            None if self.fingerprint.is_none() => {
                self.fingerprint = drift::fingerprint(netns.as_deref()).ok();
                return Step::Idle;
            }
            // Something was committed (or it cannot be told): compare the contents.
            Some(false) | None => {}
        }
        let now = drift::fingerprint(netns.as_deref());
        let reason = match (&now, &self.fingerprint) {
            (Ok(a), Some(b)) if a == b => {
                // Another table of the namespace changed; ours is as it was.
                self.dataplane.accept_generation();
                return Step::Idle;
            }
            (Ok(_), Some(_)) => "the table was changed outside Bulkhead".to_string(),
            (Ok(_), None) => "the ruleset changed before the table was read back".to_string(),
            // nft's message continues with the command and a caret line: keep one line.
            (Err(e), _) => format!(
                "the table is gone ({})",
                e.to_string().lines().next().unwrap_or_default()
            ),
        };
        let Some(installed) = self.dataplane.installed().cloned() else {
            return Step::Idle;
        };
        tracing::warn!(event = "tamper", node = %self.config.node, %reason, "repairing the kernel table");
        self.metrics.drift_repaired();
        self.dataplane.force_full();
        match self.program(Some(installed)) {
            Ok(_) => Step::Repaired(reason),
            Err(e) => Step::ApplyFailed(e),
        }
    }

    /// The diff of a change looks only where the calc graph's deltas point; if a delta
    /// ever missed an object, the installed table would keep differing from the graph's
    /// until the next whole diff. So at each read-back, with no change pending, the two
    /// are compared whole (off the path of any change); a difference is reported and
    /// programmed with a whole diff. `None` when they agree.
    fn check_installed(&mut self) -> Option<Step> {
        if !self.calc.unprogrammed.is_nothing()
            || self.dataplane.installed() == Some(self.calc.graph.table())
        {
            return None;
        }
        let reason = "the installed table differed from the calculated one".to_string();
        tracing::error!(node = %self.config.node, %reason, "a calc delta missed a change; programming the whole difference");
        self.metrics.delta_missed();
        self.calc.unprogrammed = Touched::everything();
        Some(match self.program(None) {
            Ok(_) => Step::Repaired(reason),
            Err(e) => Step::ApplyFailed(e),
        })
    }

    /// Runs until `stop` is set: restore, then step whenever the source has something,
    /// and at least every poll interval.
    pub fn run(&mut self, stop: &AtomicBool) {
        match self.restore() {
            Ok(true) => tracing::info!("restored the last rules from the cache"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not restore from the cache"),
        }
        while !stop.load(Ordering::Relaxed) {
            let _ = self.step();
            self.save_cache(false);
            self.source.wait(self.config.poll);
        }
        self.save_cache(true);
    }
}

impl Drop for Agent {
    /// An agent that ends (not one that is killed) leaves the cache current.
    fn drop(&mut self) {
        self.save_cache(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_netns::{Netns, unique_name};

    const WEP: &str = "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: a, namespace: shop, labels: {app: a}}\nspec: {node: node1, interfaceName: calia, ipNetworks: [10.65.0.1/32]}\n";
    const POLICY: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: isolate-a}\nspec: {selector: app == 'a', types: [Ingress]}\n";

    #[test]
    fn a_change_whose_delta_went_missing_is_programmed_at_the_next_read_back() {
        if bulkhead_netns::preflight().is_err() {
            eprintln!("skipped: needs root, ip netns and nft");
            return;
        }
        let ns = Netns::create(&unique_name("agent-miss")).expect("namespace");
        struct Dir(PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = Dir(std::env::temp_dir().join(unique_name("agent-miss")));
        std::fs::create_dir_all(&dir.0).expect("dir");
        std::fs::write(dir.0.join("a.yaml"), WEP).expect("write");
        let metrics = Arc::new(Metrics::default());
        let mut agent = Agent::new(
            AgentConfig::for_sandbox("node1", ns.name(), &dir.0),
            Arc::clone(&metrics),
        );
        assert_eq!(agent.step(), Step::Applied);
        assert_eq!(agent.check_drift(), Step::Idle, "in agreement");

        // The graph takes a policy, but the flush's delta never reaches `unprogrammed`.
        let policy = bulkhead_api::load_str("policy.yaml", POLICY)
            .expect("policy")
            .remove(0)
            .resource;
        agent.calc.graph.apply(Update::Upsert(policy));
        assert!(!agent.calc.graph.flush().is_empty());
        assert!(agent.calc.unprogrammed.is_nothing());

        assert!(matches!(agent.check_drift(), Step::Repaired(_)));
        assert_eq!(agent.dataplane.installed(), Some(agent.calc.graph.table()));
        let listed = ns
            .exec_ok("nft", ["list", "table", "inet", "bulkhead"])
            .expect("list");
        for name in agent.calc.graph.table().chains.keys() {
            assert!(
                listed.contains(&format!("chain {name} {{")),
                "{name} is in the kernel"
            );
        }
        assert!(
            metrics
                .render()
                .contains("bulkhead_agent_delta_misses_total 1")
        );
        assert_eq!(agent.check_drift(), Step::Idle, "in agreement again");
    }
}
