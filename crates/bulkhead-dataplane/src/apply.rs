//! Applying tables: the intended state in memory, and the transactions that reach it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::table::{DiffStats, Table, diff};

/// Runs an nft script as one transaction.
pub trait NftRunner {
    /// Runs `script` with `nft -f -`; the error is nft's own message.
    fn run(&mut self, script: &str) -> Result<(), String>;
}

/// Runs `nft` as a child process, in a named network namespace (`ip netns exec`) or in
/// the caller's own namespace.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    netns: Option<String>,
}

impl CommandRunner {
    /// `nft` inside the named network namespace.
    pub fn in_netns(name: &str) -> Self {
        CommandRunner {
            netns: Some(name.to_string()),
        }
    }

    /// `nft` in the calling process's network namespace.
    pub fn here() -> Self {
        CommandRunner { netns: None }
    }
}

impl NftRunner for CommandRunner {
    fn run(&mut self, script: &str) -> Result<(), String> {
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
    /// Wall time of the transaction (script generation and nft).
    pub duration: Duration,
}

/// The table in the kernel, kept in memory, and the means to change it.
pub struct Dataplane<R: NftRunner> {
    runner: R,
    installed: Option<Table>,
    needs_full: bool,
}

impl<R: NftRunner> Dataplane<R> {
    /// A dataplane whose first apply loads the whole table.
    pub fn new(runner: R) -> Self {
        Dataplane {
            runner,
            installed: None,
            needs_full: true,
        }
    }

    /// Makes the kernel hold `desired`: a diff against what is installed, or a full load
    /// the first time and after any failure. `Ok(None)`: nothing to do.
    pub fn apply(&mut self, desired: Table) -> Result<Option<Applied>, DataplaneError> {
        let start = Instant::now();
        let (script, stats, full) = match (&self.installed, self.needs_full) {
            (Some(old), false) => match diff(old, &desired) {
                Some((script, stats)) => (script, stats, false),
                None => return Ok(None),
            },
            _ => {
                let stats = DiffStats {
                    elements: desired.element_count(),
                    chains: desired.chains.len(),
                    sets: desired.sets.len() + desired.maps.len(),
                };
                (desired.load_script(), stats, true)
            }
        };
        if let Err(message) = self.runner.run(&script) {
            self.needs_full = true;
            tracing::warn!(%message, full, "nftables transaction failed");
            return Err(DataplaneError { message });
        }
        self.installed = Some(desired);
        self.needs_full = false;
        Ok(Some(Applied {
            stats,
            full,
            duration: start.elapsed(),
        }))
    }

    /// The table last applied successfully.
    pub fn installed(&self) -> Option<&Table> {
        self.installed.as_ref()
    }

    /// Forces the next apply to reload the whole table (after tampering was seen).
    pub fn force_full(&mut self) {
        self.needs_full = true;
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
}
