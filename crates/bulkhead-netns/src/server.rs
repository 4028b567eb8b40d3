//! Echo servers inside a namespace: TCP accept-and-echo, UDP echo.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice, IoSliceMut, PipeReader, PipeWriter, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, Shutdown, SockaddrStorage, recvmsg, sendmsg,
    setsockopt, shutdown, sockopt,
};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Connections one server keeps open at most; the oldest is closed beyond that.
const MAX_CONNECTIONS: usize = 512;

/// Something a server answers on every address of its namespace (IPv4 and IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Accept TCP connections on this port and echo whatever arrives on them.
    Tcp(u16),
    /// Answer every UDP datagram to this port with the same bytes.
    Udp(u16),
}

impl Netns {
    /// Starts answering `services` inside this namespace: the sockets are bound here on
    /// `[::]` (dual stack, so IPv4 too; `0.0.0.0` if the namespace has no IPv6) before this
    /// returns, so a bind failure (port in use, port 0) is an error and no probe can race
    /// the server. One poll loop thread serves them all.
    ///
    /// The server runs until [`Netns::stop_servers`] or until the namespace is dropped,
    /// both of which close its sockets and join its thread. Call it again for more ports.
    pub fn serve(&self, services: &[Service]) -> Result<()> {
        if services.is_empty() {
            return Ok(());
        }
        if let Some(s) = services
            .iter()
            .find(|s| matches!(s, Service::Tcp(0) | Service::Udp(0)))
        {
            return Err(Error::invalid("service", format!("{s:?}: port 0")));
        }
        let sockets = self.run_in(|| bind_all(services))??;
        let (stop_rx, stop_tx) =
            std::io::pipe().map_err(|e| Error::io("creating the server stop pipe", e))?;
        let thread = std::thread::Builder::new()
            .name(format!("echo:{}", services.len()))
            .spawn(move || serve_loop(sockets, stop_rx))
            .map_err(|e| Error::io("spawning the server thread", e))?;
        tracing::debug!(netns = %self.name(), ?services, "serving");
        self.add_server(Running {
            stop: Some(stop_tx),
            thread: Some(thread),
        });
        Ok(())
    }
}

/// A running server: closing `stop` wakes its loop, which then returns and closes every
/// socket it holds.
#[derive(Debug)]
pub(crate) struct Running {
    stop: Option<PipeWriter>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("echo server thread panicked");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Sockets {
    listeners: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
}

fn bind_all(services: &[Service]) -> Result<Sockets> {
    let mut sockets = Sockets {
        listeners: Vec::new(),
        udp: Vec::new(),
    };
    for service in services {
        match *service {
            Service::Tcp(port) => {
                let l = bind_any(port, TcpListener::bind)
                    .map_err(|e| Error::io(format!("binding TCP port {port}"), e))?;
                l.set_nonblocking(true)
                    .map_err(|e| Error::io("TCP listener", e))?;
                sockets.listeners.push(l);
            }
            Service::Udp(port) => {
                let u = bind_any(port, UdpSocket::bind)
                    .map_err(|e| Error::io(format!("binding UDP port {port}"), e))?;
                u.set_nonblocking(true)
                    .map_err(|e| Error::io("UDP socket", e))?;
                want_packet_info(&u).map_err(|e| Error::io("UDP socket options", e))?;
                sockets.udp.push(u);
            }
        }
    }
    Ok(sockets)
}

/// Binds `[::]:port` (dual stack on Linux with the default `bindv6only=0`), falling back
/// to `0.0.0.0:port` when IPv6 is unavailable.
fn bind_any<T>(port: u16, bind: impl Fn(SocketAddr) -> std::io::Result<T>) -> std::io::Result<T> {
    match bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
        Err(e) if e.raw_os_error() == Some(Errno::EAFNOSUPPORT as i32) => {
            bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        }
        r => r,
    }
}

/// Asks for the destination address of each datagram (both families on a dual-stack
/// socket: IPv4 ones arrive as mapped addresses and carry `IP_PKTINFO`).
fn want_packet_info(socket: &UdpSocket) -> std::io::Result<()> {
    if socket.local_addr()?.is_ipv6() {
        setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    }
    setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?;
    Ok(())
}

fn serve_loop(sockets: Sockets, stop: PipeReader) {
    let Sockets { listeners, udp } = sockets;
    let mut conns: VecDeque<TcpStream> = VecDeque::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::in_pktinfo);
    loop {
        let mut fds = Vec::with_capacity(1 + listeners.len() + udp.len() + conns.len());
        fds.push(PollFd::new(stop.as_fd(), PollFlags::POLLIN));
        fds.extend(
            listeners
                .iter()
                .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)),
        );
        fds.extend(
            udp.iter()
                .map(|u| PollFd::new(u.as_fd(), PollFlags::POLLIN)),
        );
        fds.extend(
            conns
                .iter()
                .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "echo server poll failed; stopping");
                return;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            // Stop pipe closed (or written to): close everything by returning. Shut the
            // listeners down first: a process another thread is spawning holds copies of
            // every descriptor until it execs, and a copy would keep the port accepting
            // connections after the stop returned; the shutdown ends the socket itself.
            for l in &listeners {
                let _ = shutdown(l.as_raw_fd(), Shutdown::Both);
            }
            return;
        }
        let mut i = 1;
        for l in &listeners {
            if ready[i] {
                accept_all(l, &mut conns);
            }
            i += 1;
        }
        for u in &udp {
            if ready[i] {
                echo_datagrams(u, &mut buf, &mut cmsg);
            }
            i += 1;
        }
        // Connections accepted in this round were not polled; they are kept as they are.
        let polled = ready.len() - i;
        let mut keep = Vec::with_capacity(conns.len());
        for (n, mut c) in conns.drain(..).enumerate() {
            let alive = if n < polled && ready[i + n] {
                echo_stream(&mut c, &mut buf)
            } else {
                true
            };
            if alive {
                keep.push(c);
            }
        }
        conns.extend(keep);
        while conns.len() > MAX_CONNECTIONS {
            conns.pop_front();
        }
    }
}

fn accept_all(listener: &TcpListener, conns: &mut VecDeque<TcpStream>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_ok() {
                    conns.push_back(stream);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock: drained. Other errors (ECONNABORTED, EMFILE): try next round.
            Err(_) => return,
        }
    }
}

/// Answers every datagram waiting on `socket` from the address it was sent to (taken
/// from `IP_PKTINFO`/`IPV6_PKTINFO`): a wildcard socket would otherwise answer from the
/// address routing prefers, which a connected client drops when its namespace has
/// several addresses.
fn echo_datagrams(socket: &UdpSocket, buf: &mut [u8], cmsg: &mut [u8]) {
    let fd = socket.as_raw_fd();
    // Bounded: a flood cannot keep the loop from seeing the stop pipe.
    for _ in 0..1024 {
        let (n, peer, local) = match receive(fd, buf, cmsg) {
            Ok(received) => received,
            Err(Errno::EINTR) => continue,
            // EAGAIN: drained.
            Err(_) => return,
        };
        let Some(peer) = peer else { continue };
        let iov = [IoSlice::new(&buf[..n])];
        let v4;
        let v6;
        let cmsgs: &[ControlMessage<'_>] = match local {
            Some(Local::V4(info)) => {
                // Source = the header's destination; let routing pick the interface.
                v4 = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: info.ipi_addr,
                    ipi_addr: info.ipi_addr,
                };
                &[ControlMessage::Ipv4PacketInfo(&v4)]
            }
            Some(Local::V6(info)) => {
                v6 = libc::in6_pktinfo {
                    ipi6_addr: info.ipi6_addr,
                    // Link-local sources need their interface; others let routing choose.
                    ipi6_ifindex: if info.ipi6_addr.s6_addr[..2] == [0xfe, 0x80] {
                        info.ipi6_ifindex
                    } else {
                        0
                    },
                };
                &[ControlMessage::Ipv6PacketInfo(&v6)]
            }
            None => &[],
        };
        let _ = sendmsg(fd, &iov, cmsgs, MsgFlags::MSG_DONTWAIT, Some(&peer));
    }
}

/// One `recvmsg`: length, sender, and the local address it was sent to.
fn receive(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> nix::Result<(usize, Option<SockaddrStorage>, Option<Local>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)?;
    let mut local = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => local = Some(Local::V4(info)),
            ControlMessageOwned::Ipv6PacketInfo(info) => local = Some(Local::V6(info)),
            _ => {}
        }
    }
    Ok((msg.bytes, msg.address, local))
}

enum Local {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

/// Echoes what is readable now; `false` when the connection should be closed.
fn echo_stream(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    loop {
        match stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}
