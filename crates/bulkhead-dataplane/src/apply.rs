//! Applying tables: the intended state in memory, and the transactions that reach it.

use std::borrow::Borrow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::diff::{TableDiff, Touched};
use crate::netlink::{ElementChange, NfSocket, SendError, element_changes};
use crate::session::{MAX_SCRIPT, NftSession, SessionError};
use crate::table::{DiffStats, Table};

/// Runs an nft script as one transaction, and optionally sends set-element changes
/// straight to the kernel.
pub trait NftRunner {
    /// Runs `script` with `nft -f -`; the error is nft's own message.
    fn run(&mut self, script: &str) -> Result<(), String>;

    /// Applies element-only changes as one netlink batch (one transaction). Optional:
    /// the default says [`ElementsError::Unsupported`] and the caller runs the
    /// equivalent nft script instead.
    fn apply_elements(&mut self, changes: &[ElementChange]) -> Result<(), ElementsError> {
        let _ = changes;
        Err(ElementsError::Unsupported)
    }

    /// The ruleset generation of the runner's namespace (the kernel's count of committed
    /// transactions), if the runner can read it.
    fn generation(&mut self) -> Option<u32> {
        None
    }
}

/// Why [`NftRunner::apply_elements`] did not apply the changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementsError {
    /// This runner cannot send netlink batches.
    #[error("netlink element updates not supported by this runner")]
    Unsupported,
    /// The batch failed (the message names the errno and the message or element).
    #[error("{0}")]
    Failed(String),
}

/// Runs `nft` in a named network namespace (`ip netns exec`) or in the caller's own
/// namespace: scripts up to [`MAX_SCRIPT`] through one long-lived `nft -i`
/// ([`NftSession`]), bigger ones (full loads) through `nft -f -`; sends element-only
/// changes over a `NETLINK_NETFILTER` socket in the same namespace. The session and the
/// socket are opened on first use and kept while the namespace is the same one (a
/// namespace deleted and recreated under the same name gets new ones).
#[derive(Debug)]
pub struct CommandRunner {
    netns: Option<String>,
    netlink: bool,
    socket: Option<NfSocket>,
    use_session: bool,
    session: Option<NftSession>,
}

impl Clone for CommandRunner {
    /// The same target; the clone opens its own socket and session.
    fn clone(&self) -> Self {
        CommandRunner {
            netns: self.netns.clone(),
            netlink: self.netlink,
            socket: None,
            use_session: self.use_session,
            session: None,
        }
    }
}

impl CommandRunner {
    /// `nft` inside the named network namespace.
    pub fn in_netns(name: &str) -> Self {
        CommandRunner {
            netns: Some(name.to_string()),
            netlink: true,
            socket: None,
            use_session: true,
            session: None,
        }
    }

    /// `nft` in the calling thread's network namespace.
    pub fn here() -> Self {
        CommandRunner {
            netns: None,
            netlink: true,
            socket: None,
            use_session: true,
            session: None,
        }
    }

    /// Runs every script with its own `nft -f -`, never through a long-lived `nft -i`.
    pub fn without_session(mut self) -> Self {
        self.use_session = false;
        self.session = None;
        self
    }

    /// Sends element changes through `nft` too, never over netlink.
    pub fn without_netlink(mut self) -> Self {
        self.netlink = false;
        self.socket = None;
        self
    }

    /// The namespace handle: `/run/netns/NAME`, or the calling thread's own.
    fn netns_path(&self) -> PathBuf {
        match &self.netns {
            Some(ns) => Path::new("/run/netns").join(ns),
            None => PathBuf::from("/proc/thread-self/ns/net"),
        }
    }
}

impl CommandRunner {
    /// Runs `script` through the session, starting one if needed. `None`: the session
    /// could not be used and nothing ran (or its outcome is unknown and it was dropped,
    /// which the error says).
    fn run_in_session(&mut self, script: &str) -> Option<Result<(), String>> {
        let path = self.netns_path();
        if !self.session.as_ref().is_some_and(|s| s.is_in(&path)) {
            self.session = None;
            match NftSession::start(self.netns.as_deref()) {
                Ok(s) => self.session = Some(s),
                Err(e) => {
                    // Not retried on every change: this runner uses nft -f from now on.
                    tracing::warn!(error = %e, "no nft session; using nft -f");
                    self.use_session = false;
                    return None;
                }
            }
        }
        let session = self.session.as_mut()?;
        match session.run(script) {
            Ok(()) => Some(Ok(())),
            Err(SessionError::Rejected(message)) => Some(Err(message)),
            Err(e @ SessionError::Broken(_)) => {
                // The transaction may or may not have committed: report a failure, so
                // the dataplane reloads the whole table next time.
                self.session = None;
                Some(Err(e.to_string()))
            }
        }
    }

    /// The netlink socket in the runner's namespace, opened on first use and again when
    /// the namespace was replaced.
    fn socket(&mut self) -> Result<&mut NfSocket, SendError> {
        let path = self.netns_path();
        if !self.socket.as_ref().is_some_and(|s| s.is_in(&path)) {
            self.socket = None;
            let socket = match &self.netns {
                Some(_) => NfSocket::open_in(&path),
                None => NfSocket::open(),
            }?;
            self.socket = Some(socket);
        }
        self.socket.as_mut().ok_or_else(|| SendError::Netns {
            path,
            source: std::io::Error::other("no socket"),
        })
    }

    /// Runs `script` with a new `nft -f -`.
    fn run_once(&mut self, script: &str) -> Result<(), String> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft", "-f", "-"]);
                c
            }
            None => {
                let mut c = Command::new("nft");
                c.args(["-f", "-"]);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("cannot write to nft: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("nft did not finish: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl NftRunner for CommandRunner {
    fn run(&mut self, script: &str) -> Result<(), String> {
        if self.use_session
            && script.len() <= MAX_SCRIPT
            && let Some(result) = self.run_in_session(script)
        {
            return result;
        }
        self.run_once(script)
    }

    fn apply_elements(&mut self, changes: &[ElementChange]) -> Result<(), ElementsError> {
        if !self.netlink {
            return Err(ElementsError::Unsupported);
        }
        let socket = self
            .socket()
            .map_err(|e| ElementsError::Failed(e.to_string()))?;
        socket.send(changes).map_err(|e| {
            // After an unknown outcome (socket error, no answer), start over with a fresh
            // socket; a refusal or an encoding error leaves the socket as good as it was.
            if !matches!(e, SendError::Rejected { .. } | SendError::Encode(_)) {
                self.socket = None;
            }
            ElementsError::Failed(e.to_string())
        })
    }

    fn generation(&mut self) -> Option<u32> {
        let socket = self.socket().ok()?;
        match socket.generation() {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the ruleset generation");
                self.socket = None;
                None
            }
        }
    }
}

/// A failed transaction. The kernel kept the previous rules (nft transactions are atomic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nftables transaction failed, previous rules kept: {message}")]
pub struct DataplaneError {
    /// nft's message.
    pub message: String,
}

/// What one apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// What changed.
    pub stats: DiffStats,
    /// True when the whole table was (re)loaded rather than diffed.
    pub full: bool,
    /// True when the change went as one netlink batch of set elements, not through nft.
    pub netlink: bool,
    /// Wall time of the transaction (diff, and netlink batch or script and nft).
    pub duration: Duration,
}

/// The table in the kernel, kept in memory, and the means to change it.
pub struct Dataplane<R: NftRunner> {
    runner: R,
    installed: Option<Table>,
    needs_full: bool,
    /// The ruleset generation right after the last successful apply.
    generation: Option<u32>,
}

impl<R: NftRunner> Dataplane<R> {
    /// A dataplane whose first apply loads the whole table.
    pub fn new(runner: R) -> Self {
        Dataplane {
            runner,
            installed: None,
            needs_full: true,
            generation: None,
        }
    }

    /// Makes the kernel hold `desired` (a table, or a reference to one: nothing is
    /// copied but what changed): a diff against what is installed, or a full load the
    /// first time and after any failure. `Ok(None)`: nothing to do.
    ///
    /// A diff that changes only set and map elements is offered to the runner as one
    /// netlink batch ([`NftRunner::apply_elements`]); if the runner cannot or the batch
    /// fails (it is one transaction, so the kernel is unchanged), the same diff runs
    /// through nft.
    pub fn apply(
        &mut self,
        desired: impl Borrow<Table>,
    ) -> Result<Option<Applied>, DataplaneError> {
        self.apply_within(desired, &Touched::everything())
    }

    /// [`Dataplane::apply`] for a `desired` table that differs from the one last
    /// applied only in the objects `touched` names (what the calc graph's deltas since
    /// then name): the diff looks at those alone ([`TableDiff::within`]), so its cost
    /// follows the change, not the table.
    pub fn apply_within(
        &mut self,
        desired: impl Borrow<Table>,
        touched: &Touched,
    ) -> Result<Option<Applied>, DataplaneError> {
        let desired = desired.borrow();
        let start = Instant::now();
        let installed = match self.installed.as_mut() {
            Some(installed) if !self.needs_full => installed,
            _ => return self.load(desired, start).map(Some),
        };
        let diff = TableDiff::within(installed, desired, touched);
        if diff.is_empty() {
            return Ok(None);
        }
        let stats = diff.stats();
        let elements = if diff.elements_only() {
            element_changes(&diff)
                .inspect_err(|why| tracing::debug!(%why, "element changes go through nft"))
                .ok()
        } else {
            None
        };
        if let Some(changes) = elements
            && send_elements(&mut self.runner, &changes)
        {
            tracing::debug!(
                elements = stats.elements,
                messages = changes.len(),
                "element changes sent as one netlink batch"
            );
            diff.apply_to(installed);
            self.generation = self.runner.generation();
            return Ok(Some(Applied {
                stats,
                full: false,
                netlink: true,
                duration: start.elapsed(),
            }));
        }
        if let Err(message) = self.runner.run(&diff.script()) {
            self.needs_full = true;
            tracing::warn!(%message, full = false, "nftables transaction failed");
            return Err(DataplaneError { message });
        }
        diff.apply_to(installed);
        self.generation = self.runner.generation();
        Ok(Some(Applied {
            stats,
            full: false,
            netlink: false,
            duration: start.elapsed(),
        }))
    }

    /// Loads the whole table (first apply, or after a failure or tampering).
    fn load(&mut self, desired: &Table, start: Instant) -> Result<Applied, DataplaneError> {
        let stats = DiffStats {
            elements: desired.element_count(),
            chains: desired.chains.len(),
            sets: desired.sets.len() + desired.maps.len(),
        };
        if let Err(message) = self.runner.run(&desired.load_script()) {
            self.needs_full = true;
            tracing::warn!(%message, full = true, "nftables transaction failed");
            return Err(DataplaneError { message });
        }
        self.installed = Some(desired.clone());
        self.needs_full = false;
        self.generation = self.runner.generation();
        Ok(Applied {
            stats,
            full: true,
            netlink: false,
            duration: start.elapsed(),
        })
    }

    /// The table last applied successfully.
    pub fn installed(&self) -> Option<&Table> {
        self.installed.as_ref()
    }

    /// Whether nothing was committed to any nftables table of the namespace since the
    /// last successful apply (the kernel's generation count has not moved); `None` when
    /// the runner cannot tell, or nothing was applied yet.
    pub fn untouched(&mut self) -> Option<bool> {
        let then = self.generation?;
        self.runner.generation().map(|now| now == then)
    }

    /// Takes the current generation as the one after the last apply: a commit elsewhere
    /// in the namespace was checked and left Bulkhead's table as it was.
    pub fn accept_generation(&mut self) {
        self.generation = self.runner.generation();
    }

    /// Forces the next apply to reload the whole table (after tampering was seen).
    pub fn force_full(&mut self) {
        self.needs_full = true;
    }
}

/// Sends element changes as one netlink batch; false if the runner cannot, or the batch
/// failed (one transaction: nothing changed, and nft takes over).
fn send_elements(runner: &mut impl NftRunner, changes: &[ElementChange]) -> bool {
    match runner.apply_elements(changes) {
        Ok(()) => true,
        Err(ElementsError::Unsupported) => false,
        Err(ElementsError::Failed(message)) => {
            tracing::warn!(%message, "netlink element batch failed; retrying with nft");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Chain;

    #[derive(Default)]
    struct Recorder {
        scripts: Vec<String>,
        fail: bool,
    }

    impl NftRunner for Recorder {
        fn run(&mut self, script: &str) -> Result<(), String> {
            self.scripts.push(script.to_string());
            if self.fail {
                Err("boom".into())
            } else {
                Ok(())
            }
        }
    }

    /// A runner that also takes element batches (or fails them).
    #[derive(Default)]
    struct Netlinker {
        nft: Recorder,
        batches: Vec<Vec<ElementChange>>,
        fail_batches: bool,
    }

    impl NftRunner for Netlinker {
        fn run(&mut self, script: &str) -> Result<(), String> {
            self.nft.run(script)
        }

        fn apply_elements(&mut self, changes: &[ElementChange]) -> Result<(), ElementsError> {
            self.batches.push(changes.to_vec());
            if self.fail_batches {
                Err(ElementsError::Failed("ENOENT".into()))
            } else {
                Ok(())
            }
        }
    }

    fn with_set(t: Table, elements: &[&str]) -> Table {
        let mut t = t;
        t.sets.insert(
            "s4_a".into(),
            crate::table::Set {
                kind: crate::table::SetKind::Ipv4,
                elements: elements.iter().map(|e| e.to_string()).collect(),
            },
        );
        t
    }

    fn table(rule: &str) -> Table {
        let mut t = Table::default();
        t.chains.insert(
            "c".into(),
            Chain {
                hook: None,
                rules: vec![rule.into()],
            },
        );
        t
    }

    #[test]
    fn first_apply_loads_then_diffs_then_reloads_after_a_failure() {
        let mut dp = Dataplane::new(Recorder::default());
        assert!(dp.apply(table("drop")).expect("ok").expect("applied").full);
        assert_eq!(dp.apply(table("drop")).expect("ok"), None);
        assert!(
            !dp.apply(table("accept"))
                .expect("ok")
                .expect("applied")
                .full
        );
        dp.runner.fail = true;
        assert!(dp.apply(table("drop")).is_err());
        assert_eq!(
            dp.installed(),
            Some(&table("accept")),
            "failed apply keeps the old state"
        );
        dp.runner.fail = false;
        assert!(dp.apply(table("drop")).expect("ok").expect("applied").full);
    }

    #[test]
    fn element_only_diffs_go_as_one_netlink_batch() {
        let mut dp = Dataplane::new(Netlinker::default());
        dp.apply(with_set(table("drop"), &[])).expect("load");
        let applied = dp
            .apply(with_set(table("drop"), &["10.65.0.1/32"]))
            .expect("ok")
            .expect("applied");
        assert!(applied.netlink && !applied.full);
        assert_eq!(
            dp.runner.nft.scripts.len(),
            1,
            "only the initial load ran nft"
        );
        assert_eq!(dp.runner.batches.len(), 1);
        assert_eq!(dp.runner.batches[0][0].set, "s4_a");
        // A chain change is structure: nft, even with elements changing too.
        let applied = dp
            .apply(with_set(table("accept"), &["10.65.0.2/32"]))
            .expect("ok")
            .expect("applied");
        assert!(!applied.netlink);
        assert_eq!(dp.runner.batches.len(), 1);
        assert_eq!(dp.runner.nft.scripts.len(), 2);
    }

    #[test]
    fn a_failed_batch_falls_back_to_the_nft_diff() {
        let mut dp = Dataplane::new(Netlinker {
            fail_batches: true,
            ..Default::default()
        });
        dp.apply(with_set(table("drop"), &["10.65.0.1/32"]))
            .expect("load");
        let applied = dp
            .apply(with_set(table("drop"), &[]))
            .expect("ok")
            .expect("applied");
        assert!(!applied.netlink && !applied.full);
        assert_eq!(dp.runner.batches.len(), 1, "tried netlink first");
        assert_eq!(
            dp.runner.nft.scripts.last().map(String::as_str),
            Some("delete element inet bulkhead s4_a { 10.65.0.1/32 }\n")
        );
        assert_eq!(dp.installed(), Some(&with_set(table("drop"), &[])));
    }

    #[test]
    fn runners_without_netlink_keep_using_nft() {
        let mut dp = Dataplane::new(Recorder::default());
        dp.apply(with_set(table("drop"), &[])).expect("load");
        let applied = dp
            .apply(with_set(table("drop"), &["10.65.0.1/32"]))
            .expect("ok")
            .expect("applied");
        assert!(!applied.netlink);
        assert_eq!(dp.runner.scripts.len(), 2);
    }
}
