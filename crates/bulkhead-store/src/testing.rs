//! Test helpers (feature `testing`): a throwaway etcd server.
//!
//! [`EtcdServer::start`] runs the `etcd` binary (Debian package `etcd-server`) on two free
//! loopback ports with a temporary data directory, and waits until it answers. The process is
//! killed by its PID when the guard is dropped, also when a test panics. Without the binary,
//! `start` returns `Ok(None)` and the caller should skip ("skipped: etcd not installed").

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{EtcdOptions, EtcdStore, Store};

/// How long a started etcd has to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd for tests. Killed (SIGKILL, by PID) on drop; its data directory is removed.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// The etcd binary: `$BULKHEAD_ETCD` if set (set but empty: none, to skip the etcd
    /// tests), else `etcd` on `PATH`, else `/usr/bin/etcd`.
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("BULKHEAD_ETCD") {
            return (!path.is_empty()).then(|| PathBuf::from(path));
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("etcd"))
                .find(|candidate| candidate.is_file())
        });
        on_path.or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
    }

    /// Starts etcd on free loopback ports and waits until it serves requests. `Ok(None)` if
    /// etcd is not installed.
    pub async fn start() -> std::io::Result<Option<Self>> {
        let Some(binary) = Self::binary() else {
            return Ok(None);
        };
        let mut last_error = None;
        // Another process can take a port between our probe and etcd's bind: retry.
        for _ in 0..3 {
            let mut server = Self {
                binary: binary.clone(),
                child: None,
                dir: tempfile::Builder::new()
                    .prefix("bulkhead-etcd-")
                    .tempdir()?,
                client_port: free_port()?,
                peer_port: free_port()?,
            };
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(Some(server)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("etcd did not start")))
    }

    /// The client URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Store options for this server, with a namespace.
    pub fn options(&self, namespace: &str) -> EtcdOptions {
        EtcdOptions {
            endpoints: vec![self.endpoint()],
            namespace: namespace.to_owned(),
            ..EtcdOptions::default()
        }
    }

    /// The PID of the running etcd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills etcd (SIGKILL, by PID) and waits for it to exit. The data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd and starts it again on the same ports and data directory.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> std::io::Result<()> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log_path = self.dir.path().join("etcd.log");
        let log = File::options().create(true).append(true).open(&log_path)?;
        let child = Command::new(&self.binary)
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "etcd exited with {status}: {log}"
                )));
            }
            let options = EtcdOptions {
                connect_timeout: Duration::from_secs(1),
                ..self.options("")
            };
            if let Ok(store) = EtcdStore::connect(options).await
                && store.current_revision().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "etcd did not answer in time: {log}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
