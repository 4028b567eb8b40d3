//! The traffic: servers in the server's namespace, the connection-rate and throughput
//! loops of the client, and the kernel's TCP counters that tell whether anything was lost.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_netns::{Endpoint, Netns};

use super::{CONNECT_PORT, MAX_CHUNKS, MAX_CONNECTIONS_PER_THREAD, SERVER_IP, SINK_PORT};

/// The servers in the server's namespace: on [`CONNECT_PORT`] several threads accept and
/// close at once; on [`SINK_PORT`] one thread reads each connection to its end. Dropping
/// stops and joins them (within about a second: `accept` wakes every 100 ms, sink reads
/// time out after 1 s).
pub(super) struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    pub(super) fn start(
        server: &Endpoint,
        acceptors: usize,
        deadline: Instant,
    ) -> anyhow::Result<Servers> {
        let mut servers = Servers {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for (port, threads) in [(CONNECT_PORT, acceptors.max(1)), (SINK_PORT, 1)] {
            let listener = server
                .netns()
                .run_in(move || listener(port))
                .context("entering the server namespace")?
                .with_context(|| format!("listening on port {port}"))?;
            let listener = Arc::new(listener);
            for _ in 0..threads {
                let listener = Arc::clone(&listener);
                let stop = Arc::clone(&servers.stop);
                let thread = std::thread::Builder::new()
                    .name(format!("bench-srv:{port}"))
                    .spawn(move || serve(&listener, port, &stop, deadline))
                    .context("spawning a server thread")?;
                servers.threads.push(thread);
            }
        }
        Ok(servers)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A listener whose `accept` returns `WouldBlock` after 100 ms without a connection
/// (`SO_RCVTIMEO` applies to `accept` on Linux), so its threads can see `stop`.
fn listener(port: u16) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?;
    let as_stream = TcpStream::from(OwnedFd::from(listener));
    as_stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(TcpListener::from(OwnedFd::from(as_stream)))
}

fn serve(listener: &TcpListener, port: u16, stop: &AtomicBool, deadline: Instant) {
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match listener.accept() {
            // Close at once: the server closes first, so TIME_WAIT stays on this side.
            Ok((stream, _)) if port == CONNECT_PORT => drop(stream),
            Ok((mut stream, _)) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        break;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            // Out of descriptors or similar: do not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Opens connections from `clients` threads for `span`: connect, wait for the server's
/// close, close. Returns (completed connections, failures, elapsed time).
pub(super) fn connection_rate(
    client: &Endpoint,
    clients: usize,
    span: Duration,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(u64, u64, Duration)> {
    let addr = SocketAddr::new(IpAddr::V4(SERVER_IP), CONNECT_PORT);
    let mut starts = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..clients.max(1) {
        let (go, wait) = mpsc::channel::<()>();
        let stop = Arc::clone(stop);
        threads.push(client.netns().spawn_thread("connect", move || {
            // If the caller gives up before the start, the channel closes and we end.
            if wait.recv().is_err() {
                return (0u64, 0u64);
            }
            let end = Instant::now() + span;
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut buf = [0u8; 64];
            for _ in 0..MAX_CONNECTIONS_PER_THREAD {
                if Instant::now() >= end || stop.load(Ordering::Relaxed) {
                    break;
                }
                if open_and_close(&addr, &mut buf) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        })?);
        starts.push(go);
    }
    let start = Instant::now();
    for go in &starts {
        let _ = go.send(());
    }
    let (mut ok, mut failed) = (0, 0);
    for thread in threads {
        let (o, f) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        ok += o;
        failed += f;
    }
    Ok((ok, failed, start.elapsed()))
}

/// One connection: connect, read until the server's close, close.
fn open_and_close(addr: &SocketAddr, buf: &mut [u8]) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(addr, Duration::from_secs(1)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .is_err()
    {
        return false;
    }
    matches!(stream.read(buf), Ok(0))
}

/// Bulk throughput over one connection for `span`, counted up to the server having read
/// everything (the client shuts down its side and waits for the server's close).
/// Returns (bytes, elapsed time).
pub(super) fn throughput(
    client: &Endpoint,
    span: Duration,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(u64, Duration)> {
    let stop = Arc::clone(stop);
    client
        .netns()
        .run_in(move || -> std::io::Result<(u64, Duration)> {
            let mut stream = TcpStream::connect_timeout(
                &SocketAddr::new(IpAddr::V4(SERVER_IP), SINK_PORT),
                Duration::from_secs(1),
            )?;
            stream.set_write_timeout(Some(Duration::from_secs(2)))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            let chunk = vec![0u8; 1 << 16];
            let start = Instant::now();
            let end = start + span;
            let mut sent = 0u64;
            for _ in 0..MAX_CHUNKS {
                if Instant::now() >= end || stop.load(Ordering::Relaxed) {
                    break;
                }
                stream.write_all(&chunk)?;
                sent += chunk.len() as u64;
            }
            stream.shutdown(Shutdown::Write)?;
            let mut byte = [0u8; 1];
            let _ = stream.read(&mut byte);
            Ok((sent, start.elapsed()))
        })
        .context("entering the client namespace")?
        .context("measuring throughput")
}

/// The namespace's TCP counters (`/proc/net/netstat` and `/proc/net/snmp` as the
/// namespace sees them), keyed `TcpExt.ListenDrops` etc.
pub(super) fn tcp_counters(ns: &Netns) -> anyhow::Result<HashMap<String, i64>> {
    ns.run_in(|| -> std::io::Result<HashMap<String, i64>> {
        let mut counters = HashMap::new();
        for file in [
            "/proc/thread-self/net/netstat",
            "/proc/thread-self/net/snmp",
        ] {
            let text = std::fs::read_to_string(file)?;
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let [names, values] = pair else { continue };
                let (Some((group, names)), Some((_, values))) =
                    (names.split_once(':'), values.split_once(':'))
                else {
                    continue;
                };
                for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                    counters.insert(format!("{group}.{name}"), value.parse().unwrap_or(0));
                }
            }
        }
        Ok(counters)
    })
    .context("entering a namespace")?
    .context("reading TCP counters")
}

pub(super) fn delta(before: &HashMap<String, i64>, after: &HashMap<String, i64>, key: &str) -> u64 {
    let get = |m: &HashMap<String, i64>| m.get(key).copied().unwrap_or(0);
    (get(after) - get(before)).max(0) as u64
}
