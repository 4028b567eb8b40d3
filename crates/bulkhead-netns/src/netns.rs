//! One named network namespace: create, run things inside, delete.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::cmd;
use crate::error::{Error, Result};
use crate::server::Running;

/// Where `ip netns` keeps its namespace handles.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Sysctls set in every namespace this crate creates, before any interface exists:
/// no IPv6 duplicate address detection (addresses are usable at once; new interfaces
/// inherit `default`), and ICMP echo sockets allowed for every group (so probes can use
/// `SOCK_DGRAM` ICMP sockets instead of raw ones or a `ping` process).
const BASE_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

static NEXT_NAME: AtomicU64 = AtomicU64::new(1);

/// The prefix of every name [`unique_name`] makes in this process: `bh-<pid>-`.
pub fn process_prefix() -> String {
    format!("bh-{}-", std::process::id())
}

/// A namespace name unique in this process and on this machine while the process lives:
/// `bh-<pid>-<n>-<tag>`, with `tag` reduced to `[A-Za-z0-9_.-]` (at most 32 characters).
/// Names of [`NodeSandbox`](crate::NodeSandbox) endpoints extend it with `-<id>`, so
/// everything one sandbox made shares its name as a prefix.
pub fn unique_name(tag: &str) -> String {
    let n = NEXT_NAME.fetch_add(1, Ordering::Relaxed);
    let mut tag = sanitize(tag, 32);
    if tag.is_empty() {
        tag.push_str("ns");
    }
    format!("{}{n}-{tag}", process_prefix())
}

/// Keeps the characters a namespace name may hold, up to `max` of them.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(max)
        .collect()
}

/// Checks that this process can create network namespaces: effective uid 0, `ip`
/// present, and `ip netns add`/`del` of a scratch namespace working.
pub fn preflight() -> Result<()> {
    if !effective_uid_is_root() {
        return Err(Error::invalid(
            "privileges",
            "creating network namespaces needs root",
        ));
    }
    let ns = Netns::create(&unique_name("preflight"))?;
    drop(ns);
    Ok(())
}

/// [`preflight`], and `nft` runs: what programming nftables in a namespace needs.
pub fn nft_preflight() -> Result<()> {
    preflight()?;
    let runs = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        Ok(())
    } else {
        Err(Error::Unmet {
            what: "nftables",
            reason: "the nft command does not run: install Debian's nftables package \
                     (apt-get install nftables)"
                .into(),
        })
    }
}

/// For kernel tests: whether this process can make network namespaces (and, with
/// `needs_nft`, run `nft`). When it cannot, prints `skipped: <why>` to stdout, so the
/// test that returns early says so.
pub fn kernel_tests_can_run(needs_nft: bool) -> bool {
    let ready = if needs_nft {
        nft_preflight()
    } else {
        preflight()
    };
    match ready {
        Ok(()) => true,
        Err(e) => {
            println!("skipped: {e}");
            false
        }
    }
}

fn effective_uid_is_root() -> bool {
    // `Uid:` real, effective, saved, filesystem.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A named network namespace owned by this value.
///
/// [`Netns::create`] runs `ip netns add NAME`, brings `lo` up and switches IPv6 DAD off.
/// Dropping it stops the servers it runs ([`Netns::serve`]), kills (SIGKILL, by process
/// group id) and reaps every process it spawned ([`Netns::spawn`]), and runs
/// `ip netns del NAME`. Devices inside go with it; a veth pair disappears when either of
/// its namespaces does. Drop never panics; failures are logged with `tracing`.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    children: Mutex<Vec<Child>>,
    servers: Mutex<Vec<Running>>,
}

impl Netns {
    /// Creates the namespace `name` (`[A-Za-z0-9_.-]`, at most 200 characters, not
    /// starting with `.` or `-`; use [`unique_name`] for one nobody else uses), brings
    /// `lo` up and sets the base sysctls (IPv6 DAD off, ICMP echo sockets allowed).
    ///
    /// Fails if the namespace already exists; an existing namespace is never adopted.
    pub fn create(name: &str) -> Result<Netns> {
        validate_name(name)?;
        cmd::checked(Command::new("ip").args(["netns", "add", name]), None)?;
        // From here on, Drop deletes it whatever fails next.
        let ns = Netns {
            name: name.to_owned(),
            path: Path::new(NETNS_RUN_DIR).join(name),
            children: Mutex::new(Vec::new()),
            servers: Mutex::new(Vec::new()),
        };
        ns.ip(["link", "set", "lo", "up"])?;
        ns.sysctl(BASE_SYSCTLS)?;
        tracing::debug!(netns = %ns.name, "created");
        Ok(ns)
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's handle file, `/run/netns/NAME`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `program args…` inside the namespace (`ip netns exec`) to completion and
    /// returns its output, whatever its exit status.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        cmd::output(&mut self.command(program, args), None)
    }

    /// Runs `program args…` inside the namespace to completion; a non-zero exit is an
    /// [`Error::Command`]. Returns standard output.
    pub fn exec_ok<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = cmd::checked(&mut self.command(program, args), None)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `program args…` inside the namespace with `input` on its standard input,
    /// to completion, and returns its output whatever its exit status.
    pub fn exec_with_input<I, S>(&self, program: &str, args: I, input: &[u8]) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        cmd::output(&mut self.command(program, args), Some(input))
    }

    /// Starts `program args…` inside the namespace in the background, in a new process
    /// group, with standard input and output on `/dev/null` (standard error is inherited).
    /// Returns its process id. The process (and its whole process group) is killed with
    /// SIGKILL and reaped by [`Netns::kill`] or when the namespace is dropped.
    pub fn spawn<I, S>(&self, program: &str, args: I) -> Result<u32>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::os::unix::process::CommandExt;
        let mut command = self.command(program, args);
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command.spawn().map_err(|source| Error::Spawn {
            command: cmd::describe(&command),
            source,
        })?;
        let pid = child.id();
        tracing::debug!(netns = %self.name, pid, command = %cmd::describe(&command), "spawned");
        lock(&self.children).push(child);
        Ok(pid)
    }

    /// Kills (SIGKILL to its process group) and reaps a process started by
    /// [`Netns::spawn`]. Returns `false`, touching nothing, if `pid` is not one of ours.
    pub fn kill(&self, pid: u32) -> Result<bool> {
        let child = {
            let mut children = lock(&self.children);
            match children.iter().position(|c| c.id() == pid) {
                Some(i) => children.swap_remove(i),
                None => return Ok(false),
            }
        };
        kill_and_reap(child).map_err(|e| Error::io(format!("killing process {pid}"), e))?;
        Ok(true)
    }

    /// Process ids of processes spawned by [`Netns::spawn`] and not yet killed.
    pub fn spawned(&self) -> Vec<u32> {
        lock(&self.children).iter().map(Child::id).collect()
    }

    /// Every process whose network namespace is this one (`ip netns pids`), ours or not.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let out = cmd::checked(Command::new("ip").args(["netns", "pids", &self.name]), None)?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Sets sysctls inside the namespace with one `ip netns exec NAME sysctl -w k=v…`.
    ///
    /// Only `net.*` keys are accepted: those are per namespace (a global `net.*` sysctl
    /// does not exist in a child namespace, so writing it fails there instead of changing
    /// the host). Anything else would reach the whole machine and is refused.
    pub fn sysctl(&self, settings: &[(&str, &str)]) -> Result<()> {
        if settings.is_empty() {
            return Ok(());
        }
        let mut args = vec!["-q".to_owned(), "-w".to_owned()];
        for (key, value) in settings {
            if !key.starts_with("net.") || key.contains('/') || key.contains("..") {
                return Err(Error::invalid(
                    "sysctl",
                    format!("{key}: only per-namespace `net.*` sysctls may be set"),
                ));
            }
            args.push(format!("{key}={value}"));
        }
        self.exec_ok("sysctl", &args).map(drop)
    }

    /// Runs `ip -n NAME args…` (iproute2 enters the namespace itself); a non-zero exit is
    /// an error. Returns standard output.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = cmd::checked(
            Command::new("ip").arg("-n").arg(&self.name).args(args),
            None,
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs several `ip` commands in one process (`ip -n NAME -batch -`), one per line,
    /// without the leading `ip`. Stops at the first failing line.
    pub fn ip_batch<S: AsRef<str>>(&self, lines: &[S]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut script = String::new();
        for line in lines {
            let line = line.as_ref();
            if line.contains('\n') {
                return Err(Error::invalid("ip batch line", line.to_owned()));
            }
            script.push_str(line);
            script.push('\n');
        }
        cmd::checked(
            Command::new("ip").args(["-n", &self.name, "-batch", "-"]),
            Some(script.as_bytes()),
        )
        .map(drop)
    }

    /// Runs `f` on a new OS thread that has entered this namespace (`setns`), waits for
    /// it and returns its result. Sockets created in `f` belong to this namespace for
    /// their whole life, wherever they are used afterwards; processes spawned from `f`
    /// start in it. The calling thread never changes namespace.
    ///
    /// A panic in `f` is resumed on the calling thread.
    pub fn run_in<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let fd = self.open()?;
        let name = self.name.as_str();
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name(thread_name(name))
                .spawn_scoped(s, move || -> Result<R> {
                    enter(&fd, name)?;
                    drop(fd);
                    Ok(f())
                })
                .map_err(|e| Error::io("spawning a namespace thread", e))?;
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts `f` on a new, detached OS thread that has entered this namespace and
    /// returns once it has (a `setns` failure is returned here, and `f` never runs).
    /// For long-lived work bound to the namespace (netlink sockets, `nft` runs); the
    /// caller is responsible for making it end.
    pub fn spawn_thread<F, R>(&self, label: &str, f: F) -> Result<NsThread<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.open()?;
        let name = self.name.clone();
        let (tx, rx) = mpsc::sync_channel::<Result<()>>(1);
        let handle = std::thread::Builder::new()
            .name(thread_name(&format!("{label}@{name}")))
            .spawn(move || {
                let entered = enter(&fd, &name);
                drop(fd);
                let ok = entered.is_ok();
                let _ = tx.send(entered);
                ok.then(f)
            })
            .map_err(|e| Error::io("spawning a namespace thread", e))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(NsThread { handle }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(_) => Err(Error::io(
                    "namespace thread",
                    std::io::Error::other("ended before entering the namespace"),
                )),
            },
        }
    }

    /// Opens the namespace handle (for `setns`).
    pub(crate) fn open(&self) -> Result<File> {
        File::open(&self.path).map_err(|source| Error::Enter {
            netns: self.name.clone(),
            source,
        })
    }

    pub(crate) fn add_server(&self, server: Running) {
        lock(&self.servers).push(server);
    }

    /// Stops every server started with [`Netns::serve`] in this namespace and waits until
    /// their sockets are closed.
    pub fn stop_servers(&self) {
        let servers = std::mem::take(&mut *lock(&self.servers));
        for server in servers {
            server.stop();
        }
    }

    fn command<I, S>(&self, program: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop_servers();
        let children = std::mem::take(&mut *lock(&self.children));
        for child in children {
            let pid = child.id();
            if let Err(e) = kill_and_reap(child) {
                tracing::warn!(netns = %self.name, pid, error = %e, "could not kill spawned process");
            }
        }
        match self.pids() {
            Ok(pids) if !pids.is_empty() => tracing::warn!(
                netns = %self.name, ?pids,
                "processes not started by this crate are still in the namespace; it lives on until they exit"
            ),
            _ => {}
        }
        match cmd::checked(Command::new("ip").args(["netns", "del", &self.name]), None) {
            Ok(_) => tracing::debug!(netns = %self.name, "deleted"),
            Err(e) => tracing::warn!(netns = %self.name, error = %e, "could not delete namespace"),
        }
    }
}

/// A thread started with [`Netns::spawn_thread`], running inside a namespace.
#[derive(Debug)]
pub struct NsThread<R> {
    handle: JoinHandle<Option<R>>,
}

impl<R> NsThread<R> {
    /// Waits for the thread; `Err` carries its panic.
    pub fn join(self) -> std::thread::Result<R> {
        self.handle
            .join()
            .map(|r| r.expect("the thread entered its namespace before it was handed out"))
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// `setns(fd, CLONE_NEWNET)` for the calling thread.
pub(crate) fn enter(fd: &File, name: &str) -> Result<()> {
    nix::sched::setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Enter {
        netns: name.to_owned(),
        source: e.into(),
    })
}

/// SIGKILL to the child's process group (it leads one: spawned with `process_group(0)`,
/// and not yet reaped, so the id cannot have been reused), then reap the child.
fn kill_and_reap(mut child: Child) -> std::io::Result<()> {
    let pid = child.id();
    let pgid = i32::try_from(pid).map_err(std::io::Error::other)?;
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        // ESRCH: the group is already empty (leader exited, nothing left).
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(e.into()),
    }
    child.wait().map(drop)
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "namespace name",
            format!("{name:?}: use 1-200 of [A-Za-z0-9_.-], not starting with . or -"),
        ))
    }
}

fn thread_name(s: &str) -> String {
    // Linux shows 15 bytes of a thread name; keep the end, which is the distinctive part.
    let start = s.len().saturating_sub(15);
    s.get(start..).unwrap_or(s).to_owned()
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let a = unique_name("node/1 x");
        let b = unique_name("");
        assert!(a.starts_with(&process_prefix()));
        assert!(a.ends_with("-node1x"), "{a}");
        assert!(b.ends_with("-ns"), "{b}");
        assert_ne!(a, b);
        assert!(validate_name(&a).is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("..").is_err());
    }

    #[test]
    fn thread_names_fit() {
        assert_eq!(thread_name("short"), "short");
        assert_eq!(thread_name("serve@bh-1234-5-node-w1").len(), 15);
    }
}
