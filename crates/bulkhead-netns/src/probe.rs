//! Probes with real packets, sent from inside a namespace, one at a time or in batches.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage, bind, connect, getsockopt,
    socket, sockopt,
};

use crate::netns::{Netns, enter};

/// The longest a single probe may wait for an answer; longer timeouts are cut to this.
/// Inside namespaces on one machine an answer takes microseconds; this bound keeps every
/// probe short and every batch bounded.
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The timeout of a probe made by the [`Probe`] constructors.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// At most this many probe threads run at once, whatever [`BatchOptions`] asks for.
const MAX_PARALLELISM: usize = 256;

/// The transport a probe uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A TCP handshake (connect); reached when it completes.
    Tcp,
    /// One UDP datagram; reached when the same bytes come back (a [`Service::Udp`]
    /// echo server answers so).
    ///
    /// [`Service::Udp`]: crate::Service::Udp
    Udp,
    /// One ICMP (or ICMPv6) echo request; reached on the matching echo reply.
    Icmp,
    /// An SCTP association (connect). [`Outcome::Unsupported`] when the kernel has no SCTP
    /// sockets (see [`sctp_supported`]); no SCTP server is provided.
    Sctp,
}

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The target answered: handshake completed, datagram echoed, echo reply received.
    Reached,
    /// Actively refused: TCP RST, ICMP port unreachable.
    Refused,
    /// An ICMP unreachable/prohibited error, or local policy refused to send (EPERM).
    Unreachable,
    /// No answer within the timeout (a silent drop looks like this).
    TimedOut,
    /// The probe cannot be made here (no SCTP in the kernel, …); the reason says why.
    Unsupported(String),
    /// The batch deadline passed before this probe started.
    NotRun,
    /// Something else failed (namespace gone, source address not local, …).
    Error(String),
}

impl Outcome {
    /// Whether the target answered ([`Outcome::Reached`]).
    pub fn reached(&self) -> bool {
        matches!(self, Outcome::Reached)
    }
}

/// One probe: from a namespace (optionally from a given local address) to a target.
#[derive(Clone, Copy, Debug)]
pub struct Probe<'a> {
    /// The namespace the probe is sent from.
    pub from: &'a Netns,
    /// The local address to send from; the kernel chooses when `None`.
    pub source: Option<IpAddr>,
    /// The transport.
    pub protocol: Protocol,
    /// The destination address.
    pub target: IpAddr,
    /// The destination port (ignored for ICMP).
    pub port: u16,
    /// How long to wait for an answer; at most [`MAX_PROBE_TIMEOUT`].
    pub timeout: Duration,
}

impl<'a> Probe<'a> {
    /// A TCP connect probe, 500 ms timeout.
    pub fn tcp(from: &'a Netns, target: IpAddr, port: u16) -> Self {
        Self::new(from, Protocol::Tcp, target, port)
    }

    /// A UDP echo probe, 500 ms timeout.
    pub fn udp(from: &'a Netns, target: IpAddr, port: u16) -> Self {
        Self::new(from, Protocol::Udp, target, port)
    }

    /// An ICMP echo probe, 500 ms timeout.
    pub fn icmp(from: &'a Netns, target: IpAddr) -> Self {
        Self::new(from, Protocol::Icmp, target, 0)
    }

    /// A probe of any protocol, 500 ms timeout.
    pub fn new(from: &'a Netns, protocol: Protocol, target: IpAddr, port: u16) -> Self {
        Probe {
            from,
            source: None,
            protocol,
            target,
            port,
            timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }

    /// The same probe with another timeout (cut to [`MAX_PROBE_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same probe sent from `source`, which must be an address of `from`.
    pub fn with_source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }
}

/// How a batch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Probes in flight at once (threads), 1 to 256. Default 64.
    pub parallelism: usize,
    /// The whole batch ends by then (plus the time to notice): probes not started are
    /// [`Outcome::NotRun`], and running probes' timeouts are cut to it. Default 10 s.
    pub deadline: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            parallelism: 64,
            deadline: Duration::from_secs(10),
        }
    }
}

/// Connects with TCP from `ns` to `addr:port`; `true` if the handshake completes
/// within `timeout` (at most [`MAX_PROBE_TIMEOUT`]).
pub fn tcp_connect(ns: &Netns, addr: IpAddr, port: u16, timeout: Duration) -> bool {
    probe(&Probe::tcp(ns, addr, port).with_timeout(timeout)).reached()
}

/// Sends one UDP datagram from `ns` to `addr:port`; `true` if the same bytes come back
/// within `timeout` (at most [`MAX_PROBE_TIMEOUT`]).
pub fn udp_request(ns: &Netns, addr: IpAddr, port: u16, timeout: Duration) -> bool {
    probe(&Probe::udp(ns, addr, port).with_timeout(timeout)).reached()
}

/// Sends one ICMP (ICMPv6 for an IPv6 address) echo request from `ns`; `true` if the
/// reply arrives within `timeout` (at most [`MAX_PROBE_TIMEOUT`]).
pub fn icmp_echo(ns: &Netns, addr: IpAddr, timeout: Duration) -> bool {
    probe(&Probe::icmp(ns, addr).with_timeout(timeout)).reached()
}

/// Whether SCTP sockets can be created in `ns` (the kernel has SCTP). `false` also
/// when the namespace cannot be entered.
pub fn sctp_supported(ns: &Netns) -> bool {
    ns.run_in(sctp_supported_here).unwrap_or(false)
}

fn sctp_supported_here() -> bool {
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .is_ok()
}

/// Runs one probe on a thread inside `probe.from` and returns what it saw.
pub fn probe(probe: &Probe<'_>) -> Outcome {
    let timeout = probe.timeout.min(MAX_PROBE_TIMEOUT);
    probe
        .from
        .run_in(|| probe_here(probe, timeout))
        .unwrap_or_else(|e| Outcome::Error(e.to_string()))
}

/// Runs `probes` concurrently (at most `options.parallelism` at once, all done by
/// `options.deadline`) and returns, in order, whether each reached its target.
pub fn run_batch(probes: &[Probe<'_>], options: &BatchOptions) -> Vec<bool> {
    run_batch_outcomes(probes, options)
        .iter()
        .map(Outcome::reached)
        .collect()
}

/// Like [`run_batch`], with the full [`Outcome`] of each probe.
///
/// Worker threads take probes in order from a shared queue; each enters the source
/// namespace of its probe (`setns`, once per change of namespace) and sends it. A probe
/// whose turn comes after the deadline is [`Outcome::NotRun`].
pub fn run_batch_outcomes(probes: &[Probe<'_>], options: &BatchOptions) -> Vec<Outcome> {
    let n = probes.len();
    if n == 0 {
        return Vec::new();
    }
    let deadline = Instant::now() + options.deadline;
    // One handle per source namespace, opened once and shared by the workers.
    let mut handles: HashMap<&str, Result<File, String>> = HashMap::new();
    for p in probes {
        handles
            .entry(p.from.name())
            .or_insert_with(|| p.from.open().map_err(|e| e.to_string()));
    }
    let handles = &handles;
    let next = AtomicUsize::new(0);
    let next = &next;
    let workers = options.parallelism.clamp(1, MAX_PARALLELISM).min(n);
    let mut results: Vec<Option<Outcome>> = vec![None; n];
    std::thread::scope(|s| {
        let mut spawned = Vec::with_capacity(workers);
        for w in 0..workers {
            let worker = std::thread::Builder::new()
                .name(format!("probe-{w}"))
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || worker(probes, handles, next, deadline));
            match worker {
                Ok(h) => spawned.push(h),
                Err(e) => tracing::warn!(error = %e, "could not start a probe worker"),
            }
        }
        for h in spawned {
            match h.join() {
                Ok(done) => {
                    for (i, outcome) in done {
                        results[i] = Some(outcome);
                    }
                }
                Err(_) => tracing::warn!("a probe worker panicked"),
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Outcome::Error("no worker ran this probe".to_owned())))
        .collect()
}

fn worker(
    probes: &[Probe<'_>],
    handles: &HashMap<&str, Result<File, String>>,
    next: &AtomicUsize,
    deadline: Instant,
) -> Vec<(usize, Outcome)> {
    let mut done = Vec::new();
    let mut current: Option<&str> = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(p) = probes.get(i) else {
            return done;
        };
        let now = Instant::now();
        if now >= deadline {
            done.push((i, Outcome::NotRun));
            continue;
        }
        let name = p.from.name();
        if current != Some(name) {
            let entered = match handles.get(name) {
                Some(Ok(fd)) => enter(fd, name).map_err(|e| e.to_string()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(format!("namespace {name} was not opened")),
            };
            if let Err(e) = entered {
                // This thread may now be in no namespace we know: enter again next time.
                current = None;
                done.push((i, Outcome::Error(e)));
                continue;
            }
            current = Some(name);
        }
        let timeout = p.timeout.min(MAX_PROBE_TIMEOUT).min(deadline - now);
        done.push((i, probe_here(p, timeout)));
    }
}

/// Sends one probe from the namespace the calling thread is in.
fn probe_here(p: &Probe<'_>, timeout: Duration) -> Outcome {
    if p.source.is_some_and(|s| s.is_ipv4() != p.target.is_ipv4()) {
        return Outcome::Error("source and target address families differ".to_owned());
    }
    let target = SocketAddr::new(p.target, p.port);
    match p.protocol {
        Protocol::Tcp => stream_connect(SockProtocol::Tcp, p.source, target, timeout),
        Protocol::Sctp => {
            if sctp_supported_here() {
                stream_connect(SockProtocol::Sctp, p.source, target, timeout)
            } else {
                Outcome::Unsupported("the kernel has no SCTP sockets".to_owned())
            }
        }
        Protocol::Udp => udp_echo(p.source, target, timeout),
        Protocol::Icmp => icmp_echo_here(p.source, p.target, timeout),
    }
}

/// A non-blocking connect, waited for with poll.
fn stream_connect(
    protocol: SockProtocol,
    source: Option<IpAddr>,
    target: SocketAddr,
    timeout: Duration,
) -> Outcome {
    let family = family_of(target.ip());
    let fd = match socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        protocol,
    ) {
        Ok(fd) => fd,
        Err(e) => return errno_outcome(e),
    };
    if let Some(src) = source
        && let Err(e) = bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(src, 0)),
        )
    {
        return errno_outcome(e);
    }
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(target)) {
        Ok(()) => return Outcome::Reached,
        Err(Errno::EINPROGRESS) => {}
        Err(e) => return errno_outcome(e),
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::TimedOut;
        }
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, poll_timeout(left)) {
            Ok(0) => return Outcome::TimedOut,
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return errno_outcome(e),
        }
    }
    match getsockopt(&fd, sockopt::SocketError) {
        Ok(0) => Outcome::Reached,
        Ok(code) => errno_outcome(Errno::from_raw(code)),
        Err(e) => errno_outcome(e),
    }
}

/// One datagram out, the same bytes back.
fn udp_echo(source: Option<IpAddr>, target: SocketAddr, timeout: Duration) -> Outcome {
    let local = SocketAddr::new(source.unwrap_or_else(|| unspecified(target.ip())), 0);
    let socket = match UdpSocket::bind(local) {
        Ok(s) => s,
        Err(e) => return io_outcome(&e),
    };
    if let Err(e) = socket.connect(target) {
        return io_outcome(&e);
    }
    let token = token();
    exchange(&socket, &token, timeout, |reply| reply == token)
}

/// One ICMP echo request on an unprivileged ICMP socket (`SOCK_DGRAM`, allowed by the
/// `ping_group_range` every namespace of ours sets); `ping` when that is refused.
fn icmp_echo_here(source: Option<IpAddr>, target: IpAddr, timeout: Duration) -> Outcome {
    let (protocol, request, reply) = match target {
        IpAddr::V4(_) => (SockProtocol::Icmp, 8u8, 0u8),
        IpAddr::V6(_) => (SockProtocol::IcmpV6, 128, 129),
    };
    let fd: OwnedFd = match socket(
        family_of(target),
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        protocol,
    ) {
        Ok(fd) => fd,
        Err(Errno::EACCES | Errno::EPERM) => return ping_command(source, target, timeout),
        Err(e) => return errno_outcome(e),
    };
    if let Some(src) = source
        && let Err(e) = bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(src, 0)),
        )
    {
        return errno_outcome(e);
    }
    // An ICMP socket is a datagram socket: std's UdpSocket drives it fine.
    let socket = UdpSocket::from(fd);
    if let Err(e) = socket.connect(SocketAddr::new(target, 0)) {
        return io_outcome(&e);
    }
    let token = token();
    // Type, code, checksum and identifier are filled in by the kernel; sequence 1.
    let mut packet = vec![request, 0, 0, 0, 0, 0, 0, 1];
    packet.extend_from_slice(&token);
    exchange(&socket, &packet, timeout, |answer| {
        answer.len() >= 8 && answer[0] == reply && answer[8..] == token
    })
}

/// Sends `request` on a connected datagram socket and waits for an answer `matches`
/// accepts, ignoring others, until `timeout`.
fn exchange(
    socket: &UdpSocket,
    request: &[u8],
    timeout: Duration,
    matches: impl Fn(&[u8]) -> bool,
) -> Outcome {
    if let Err(e) = socket.send(request) {
        return io_outcome(&e);
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::TimedOut;
        }
        if let Err(e) = socket.set_read_timeout(Some(left.max(Duration::from_millis(1)))) {
            return io_outcome(&e);
        }
        match socket.recv(&mut buf) {
            Ok(n) if matches(&buf[..n]) => return Outcome::Reached,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return io_outcome(&e),
        }
    }
}

/// `ping -c1` from the calling thread's namespace (the child inherits it).
fn ping_command(source: Option<IpAddr>, target: IpAddr, timeout: Duration) -> Outcome {
    let secs = timeout.as_secs_f64().ceil().max(1.0).to_string();
    let mut cmd = Command::new("ping");
    cmd.args(["-c1", "-n", "-q", "-W", &secs]);
    if let Some(src) = source {
        cmd.arg("-I").arg(src.to_string());
    }
    cmd.arg(target.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.status() {
        Ok(s) if s.success() => Outcome::Reached,
        // 1: no reply.
        Ok(s) if s.code() == Some(1) => Outcome::TimedOut,
        Ok(s) => Outcome::Error(format!("ping exited with {s}")),
        Err(e) => Outcome::Error(format!("could not run ping: {e}")),
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn poll_timeout(d: Duration) -> PollTimeout {
    // Round up so a sub-millisecond remainder still waits; capped well below u16::MAX.
    let ms = d.as_micros().div_ceil(1000).min(60_000);
    PollTimeout::from(u16::try_from(ms).unwrap_or(60_000))
}

fn io_outcome(e: &io::Error) -> Outcome {
    if let Some(code) = e.raw_os_error() {
        return errno_outcome(Errno::from_raw(code));
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Outcome::TimedOut,
        _ => Outcome::Error(e.to_string()),
    }
}

fn errno_outcome(e: Errno) -> Outcome {
    match e {
        Errno::ECONNREFUSED => Outcome::Refused,
        Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EACCES | Errno::EPERM => {
            Outcome::Unreachable
        }
        Errno::ETIMEDOUT | Errno::EAGAIN => Outcome::TimedOut,
        Errno::EPROTONOSUPPORT | Errno::EAFNOSUPPORT | Errno::ESOCKTNOSUPPORT => {
            Outcome::Unsupported(e.desc().to_owned())
        }
        Errno::EADDRNOTAVAIL => {
            Outcome::Error("source address is not an address of the namespace".to_owned())
        }
        other => Outcome::Error(other.desc().to_owned()),
    }
}

/// 16 bytes no other probe of this process sends.
fn token() -> [u8; 16] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut t = [0u8; 16];
    t[..4].copy_from_slice(&std::process::id().to_be_bytes());
    t[4..12].copy_from_slice(&n.to_be_bytes());
    t[12..].copy_from_slice(&nanos.to_be_bytes());
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(errno_outcome(Errno::ECONNREFUSED), Outcome::Refused);
        assert_eq!(errno_outcome(Errno::EHOSTUNREACH), Outcome::Unreachable);
        assert_eq!(errno_outcome(Errno::ETIMEDOUT), Outcome::TimedOut);
        assert!(matches!(
            errno_outcome(Errno::EPROTONOSUPPORT),
            Outcome::Unsupported(_)
        ));
        assert!(Outcome::Reached.reached());
        assert!(!Outcome::NotRun.reached());
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(token(), token());
    }

    #[test]
    fn poll_timeout_rounds_up() {
        assert_eq!(
            poll_timeout(Duration::from_micros(10)),
            PollTimeout::from(1u16)
        );
        assert_eq!(
            poll_timeout(Duration::from_secs(1)),
            PollTimeout::from(1000u16)
        );
    }
}
