//! A long-lived `nft -i` for structure changes.
//!
//! Every `nft -f -` run pays for a process start and, on exit, for closing a netlink
//! socket that committed nf_tables transactions: the kernel waits for an RCU grace
//! period there, about 15 ms on these machines, longer under load (strace: `close(3)`
//! took 15.4 ms of an 18 ms run). One interactive `nft` kept open pays neither.
//!
//! The protocol: a script (one command per line, as [`crate::table`] writes them) is sent
//! as ONE input line, its commands joined by `;`: nft runs an input line as one batch, so
//! it is one kernel transaction, all or nothing, as with `nft -f`. It is followed by a
//! marker line, `list table inet bulkhead_sync_N`, naming a table that does not exist:
//! nft reports that on stderr, echoing the marker line. Everything nft wrote to stderr
//! before the marker's report belongs to the script: nothing means it committed, anything
//! is its error. stdout is discarded.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::netlink::NetnsId;

/// Longest script sent through the session; longer ones (full loads) go to `nft -f -`.
pub const MAX_SCRIPT: usize = 256 << 10;
/// How long one transaction may take before the session is given up.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Why a script did not run through the session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// nft refused the transaction (its message); the kernel kept the previous rules and
    /// the session is still usable.
    #[error("{0}")]
    Rejected(String),
    /// The session broke (nft exited, did not answer in time, or could not be written
    /// to); the outcome of the transaction is unknown and the session must be dropped.
    #[error("nft session broke: {0}")]
    Broken(String),
}

/// One `nft -i` process in one network namespace.
pub struct NftSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Receiver<String>,
    netns: NetnsId,
    next_marker: u64,
}

impl NftSession {
    /// Starts `nft -i` in the named namespace (`ip netns exec`), or in the calling
    /// thread's (`None`), and checks that it answers the marker protocol.
    pub fn start(netns: Option<&str>) -> Result<NftSession, SessionError> {
        let (mut cmd, path) = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft", "-i"]);
                (c, Path::new("/run/netns").join(ns))
            }
            None => {
                let mut c = Command::new("nft");
                c.arg("-i");
                (c, Path::new("/proc/thread-self/ns/net").to_path_buf())
            }
        };
        let broken = |what: &str, e: std::io::Error| SessionError::Broken(format!("{what}: {e}"));
        let id = NetnsId::of(&path).map_err(|e| broken("namespace", e))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| broken("cannot run nft -i", e))?;
        let (tx, rx) = channel();
        if let Some(err) = child.stderr.take() {
            std::thread::Builder::new()
                .name("bh-nft-session".into())
                .spawn(move || {
                    for line in BufReader::new(err).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| broken("reader thread", e))?;
        }
        let mut session = NftSession {
            stdin: child.stdin.take(),
            child,
            stderr: rx,
            netns: id,
            next_marker: 0,
        };
        // An empty transaction: proves nft answers the marker as expected.
        session.run("")?;
        Ok(session)
    }

    /// True while the session's namespace is the one `path` names (a namespace deleted
    /// and created again under the same name is another one).
    pub fn is_in(&self, path: &Path) -> bool {
        NetnsId::of(path).is_ok_and(|id| id == self.netns)
    }

    /// Runs `script` (one nft command per line) as one transaction.
    pub fn run(&mut self, script: &str) -> Result<(), SessionError> {
        let line = script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        self.next_marker += 1;
        let marker = format!("list table inet bulkhead_sync_{}", self.next_marker);
        let input = if line.is_empty() {
            format!("{marker}\n")
        } else {
            format!("{line}\n{marker}\n")
        };
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| SessionError::Broken("stdin closed".into()))?;
        stdin
            .write_all(input.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| SessionError::Broken(format!("cannot write to nft: {e}")))?;
        let deadline = Instant::now() + TIMEOUT;
        let mut said: Vec<String> = Vec::new();
        loop {
            let next = self.next_line(deadline)?;
            if next.trim_end() == marker {
                // The marker's own report: its `Error:` line came just before its echo,
                // and the caret line that underlines it follows.
                said.pop();
                self.next_line(deadline)?;
                break;
            }
            said.push(next);
        }
        if said.is_empty() {
            Ok(())
        } else {
            Err(SessionError::Rejected(said.join("\n")))
        }
    }

    fn next_line(&self, deadline: Instant) -> Result<String, SessionError> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.stderr.recv_timeout(left).map_err(|e| {
            SessionError::Broken(match e {
                RecvTimeoutError::Timeout => format!("no answer within {TIMEOUT:?}"),
                RecvTimeoutError::Disconnected => "nft exited".into(),
            })
        })
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        // End of input ends nft; a session that stopped answering is killed.
        drop(self.stdin.take());
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for NftSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSession")
            .field("pid", &self.child.id())
            .field("netns", &self.netns)
            .finish()
    }
}
