//! A `NETLINK_NETFILTER` socket that sends one set-element batch and reads the kernel's
//! answer to every message in it.
//!
//! A netlink socket belongs to the network namespace it was created in, for its whole
//! life. [`NfSocket::open_in`] therefore creates it on a short-lived thread that entered
//! the target namespace (`setns` is per thread; the calling thread never moves), and
//! remembers which namespace that was, so a caller can tell when a namespace of the same
//! name was recreated ([`NfSocket::is_in`]).
//!
//! The kernel processes a batch inside the `sendmsg` call, as one transaction: every
//! message is checked, then all of them commit or none does. Each element message
//! carries `NLM_F_ACK`, so success is confirmed message by message; a failure names the
//! message (and, with `NETLINK_EXT_ACK`, the element) that caused it.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, sockopt,
};

use super::DecodeError;
use super::consts::{NETLINK_CAP_ACK, NETLINK_EXT_ACK, SOL_NETLINK};
use super::element::ElementChange;
use super::generation::{GenReply, decode_generation, encode_getgen};
use super::message::{
    Ack, Batch, EncodeError, EncodeOptions, MessageInfo, decode_acks, encode_batch,
};

// NETLINK_EXT_ACK (errors say which attribute) and NETLINK_CAP_ACK (acks do not echo
// the request), through nix's own socket-option macro: the one `unsafe` call
// (`libc::setsockopt`) is inside nix's macro, none is written here.
use nix::{setsockopt_impl, sockopt_impl};
sockopt_impl!(
    /// `NETLINK_EXT_ACK`.
    ExtAck, SetOnly, SOL_NETLINK, NETLINK_EXT_ACK, bool
);
sockopt_impl!(
    /// `NETLINK_CAP_ACK`.
    CapAck, SetOnly, SOL_NETLINK, NETLINK_CAP_ACK, bool
);

/// How long to wait for acks the kernel has not queued by the time `sendmsg` returns
/// (it normally has: the batch is processed inside the call).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive buffer asked for (`SO_RCVBUFFORCE`), so acks of big batches are not dropped.
const RCVBUF: usize = 4 << 20;
/// Send buffer floor (`SO_SNDBUFFORCE`); a batch must fit in it whole.
const SNDBUF: usize = 4 << 20;

/// Identity of a network namespace: the device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetnsId {
    dev: u64,
    ino: u64,
}

impl NetnsId {
    /// The namespace `path` refers to (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub fn of(path: &Path) -> std::io::Result<NetnsId> {
        let m = std::fs::metadata(path)?;
        Ok(NetnsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// The calling thread's namespace.
    pub fn current() -> std::io::Result<NetnsId> {
        NetnsId::of(Path::new("/proc/thread-self/ns/net"))
    }
}

/// Why a batch was not (known to be) applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The changes cannot be encoded; nothing was sent.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The namespace could not be entered; nothing was sent.
    #[error("cannot enter network namespace {path}: {source}")]
    Netns {
        /// Its path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A socket call failed. `during` says which; after `sendmsg` the outcome is unknown.
    #[error("netlink {during}: {errno}")]
    Io {
        /// `socket`, `bind`, `sendmsg`, `recv`, `poll`.
        during: &'static str,
        /// The error.
        errno: Errno,
    },
    /// The kernel refused the batch: the transaction was aborted and nothing changed.
    #[error("kernel refused the batch, nothing applied: {culprit}: {errno}{}", detail(.message))]
    Rejected {
        /// The error of the first refused message (`ENOENT`, `EEXIST`, …).
        errno: Errno,
        /// Which message, and element when the kernel said: e.g.
        /// `DELSETELEM s4_x element 10.65.0.1/32 (message 2 of 3, seq 12)`.
        culprit: String,
        /// The kernel's extended-ack text, if any.
        message: Option<String>,
        /// How many messages were refused in all.
        refused: usize,
    },
    /// Not every message was answered in time: the outcome is unknown.
    #[error("no answer from the kernel for {missing} of {sent} messages")]
    NoAnswer {
        /// Messages not answered.
        missing: usize,
        /// Messages that asked for an answer.
        sent: usize,
    },
    /// The kernel's answer could not be read: the outcome is unknown.
    #[error("cannot read the kernel's answer: {0}")]
    Decode(#[from] DecodeError),
}

fn detail(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

fn io(during: &'static str) -> impl FnOnce(Errno) -> SendError {
    move |errno| SendError::Io { during, errno }
}

/// A `NETLINK_NETFILTER` socket bound to one network namespace.
#[derive(Debug)]
pub struct NfSocket {
    fd: OwnedFd,
    netns: NetnsId,
    next_seq: u32,
}

impl NfSocket {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<NfSocket, SendError> {
        let netns = NetnsId::current().map_err(|e| SendError::Netns {
            path: "/proc/thread-self/ns/net".into(),
            source: e,
        })?;
        let fd = nix::sys::socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .map_err(io("socket"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(io("bind"))?;
        // Best effort: without them acks are longer and errors name no element.
        let _ = setsockopt(&fd, ExtAck, &true);
        let _ = setsockopt(&fd, CapAck, &true);
        if setsockopt(&fd, sockopt::RcvBufForce, &RCVBUF).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &RCVBUF);
        }
        if setsockopt(&fd, sockopt::SndBufForce, &SNDBUF).is_err() {
            let _ = setsockopt(&fd, sockopt::SndBuf, &SNDBUF);
        }
        // Sequence numbers only have to differ between batches on this socket; start
        // somewhere unlikely to match a stale answer of an earlier socket.
        let next_seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(NfSocket {
            fd,
            netns,
            next_seq,
        })
    }

    /// A socket in the network namespace at `path` (e.g. `/run/netns/NAME`), created on
    /// a dedicated thread that entered it; the calling thread stays where it is.
    pub fn open_in(path: &Path) -> Result<NfSocket, SendError> {
        let ns_err = |source: std::io::Error| SendError::Netns {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(ns_err)?;
        let want = NetnsId::of(path).map_err(ns_err)?;
        let socket = std::thread::Builder::new()
            .name("bh-nl-open".into())
            .spawn(move || -> Result<NfSocket, SendError> {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| SendError::Netns {
                    path: PathBuf::new(),
                    source: e.into(),
                })?;
                NfSocket::open()
            })
            .map_err(ns_err)?
            .join()
            .map_err(|_| ns_err(std::io::Error::other("namespace thread panicked")))?
            .map_err(|e| match e {
                SendError::Netns { source, .. } => ns_err(source),
                other => other,
            })?;
        if socket.netns != want {
            return Err(ns_err(std::io::Error::other(
                "socket ended up in another namespace",
            )));
        }
        Ok(socket)
    }

    /// The namespace the socket lives in.
    pub fn netns(&self) -> NetnsId {
        self.netns
    }

    /// True if the socket lives in the namespace `path` refers to now.
    pub fn is_in(&self, path: &Path) -> bool {
        NetnsId::of(path).is_ok_and(|id| id == self.netns)
    }

    /// Sends `changes` as one batch (one transaction) and waits for the kernel's answer
    /// to every message. `Ok` only when every message was acknowledged; the kernel then
    /// committed all of them. An empty list sends nothing.
    pub fn send(&mut self, changes: &[ElementChange]) -> Result<(), SendError> {
        let batch = encode_batch(
            changes,
            EncodeOptions {
                seq: self.next_seq,
                ack: true,
            },
        )?;
        if batch.messages.is_empty() {
            return Ok(());
        }
        self.next_seq = batch.end_seq.wrapping_add(1);
        self.drain_stale()?;
        if batch.bytes.len() + 4096 > SNDBUF {
            let _ = setsockopt(&self.fd, sockopt::SndBufForce, &(batch.bytes.len() + 4096));
        }
        let sent =
            send(self.fd.as_raw_fd(), &batch.bytes, MsgFlags::empty()).map_err(io("sendmsg"))?;
        if sent != batch.bytes.len() {
            return Err(SendError::Io {
                during: "sendmsg (short write)",
                errno: Errno::EMSGSIZE,
            });
        }
        let acks = self.read_acks(&batch)?;
        verdict(&batch, changes, &acks)
    }

    /// The namespace's ruleset generation (see [`super::decode_generation`]).
    pub fn generation(&mut self) -> Result<u32, SendError> {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.drain_stale()?;
        let request = encode_getgen(seq);
        send(self.fd.as_raw_fd(), &request, MsgFlags::empty()).map_err(io("sendmsg"))?;
        let mut buf = vec![0u8; 8 * 1024];
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) if n > 0 => match decode_generation(&buf[..n], seq) {
                    Ok(GenReply::Generation(g)) => return Ok(g),
                    Ok(GenReply::Refused(errno)) => {
                        return Err(SendError::Rejected {
                            errno: Errno::from_raw(errno),
                            culprit: "GETGEN".into(),
                            message: None,
                            refused: 1,
                        });
                    }
                    Ok(GenReply::Nothing) => continue,
                    Err(e) => return Err(SendError::Decode(e)),
                },
                Ok(_) | Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(e) => {
                    return Err(SendError::Io {
                        during: "recv",
                        errno: e,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SendError::NoAnswer {
                    missing: 1,
                    sent: 1,
                });
            }
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            if let Err(e) = poll(&mut fds, timeout)
                && e != Errno::EINTR
            {
                return Err(SendError::Io {
                    during: "poll",
                    errno: e,
                });
            }
        }
    }

    /// Throws away answers left over from an earlier batch that timed out.
    fn drain_stale(&self) -> Result<(), SendError> {
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..1024 {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) | Err(Errno::EAGAIN) => return Ok(()),
                Ok(_) | Err(Errno::ENOBUFS) => continue,
                Err(e) => {
                    return Err(SendError::Io {
                        during: "recv",
                        errno: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads answers until every message that asked for one has one, or an error
    /// arrived and nothing more is queued, or [`ACK_TIMEOUT`] passed.
    fn read_acks(&self, batch: &Batch) -> Result<Vec<Ack>, SendError> {
        let in_batch = |seq: u32| {
            seq.wrapping_sub(batch.begin_seq) <= batch.end_seq.wrapping_sub(batch.begin_seq)
        };
        let mut acks: Vec<Ack> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = Instant::now() + ACK_TIMEOUT;
        let wanted = batch.messages.len();
        loop {
            // Everything the kernel has queued.
            loop {
                match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                    Ok(0) | Err(Errno::EAGAIN) => break,
                    Ok(n) => acks.extend(
                        decode_acks(&buf[..n])?
                            .into_iter()
                            .filter(|a| in_batch(a.seq)),
                    ),
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(SendError::Io {
                            during: "recv",
                            errno: e,
                        });
                    }
                }
            }
            let answered = batch
                .messages
                .iter()
                .filter(|m| acks.iter().any(|a| a.seq == m.seq))
                .count();
            if answered == wanted || acks.iter().any(|a| a.errno != 0) {
                return Ok(acks);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SendError::NoAnswer {
                    missing: wanted - answered,
                    sent: wanted,
                });
            }
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    return Err(SendError::Io {
                        during: "poll",
                        errno: e,
                    });
                }
            }
        }
    }
}

/// `Ok` if every answer is an ack, else the first refusal in batch order, named.
fn verdict(batch: &Batch, changes: &[ElementChange], acks: &[Ack]) -> Result<(), SendError> {
    let mut refused: Vec<&Ack> = acks.iter().filter(|a| a.errno != 0).collect();
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort_by_key(|a| a.seq.wrapping_sub(batch.begin_seq));
    let first = refused[0];
    Err(SendError::Rejected {
        errno: Errno::from_raw(first.errno),
        culprit: culprit(batch, changes, first),
        message: first.message.clone(),
        refused: refused.len(),
    })
}

/// Names the message (and element) an error answers.
fn culprit(batch: &Batch, changes: &[ElementChange], ack: &Ack) -> String {
    let total = batch.messages.len();
    if ack.seq == batch.begin_seq {
        return format!("the batch as a whole (BATCH_BEGIN, seq {})", ack.seq);
    }
    if ack.seq == batch.end_seq {
        return format!("the batch as a whole (BATCH_END, seq {})", ack.seq);
    }
    let Some((i, m)) = batch
        .messages
        .iter()
        .enumerate()
        .find(|(_, m)| m.seq == ack.seq)
    else {
        return format!("message seq {}", ack.seq);
    };
    let op = match m.op {
        super::ElementOp::Add => "NEWSETELEM",
        super::ElementOp::Delete => "DELSETELEM",
    };
    let element = ack
        .offset
        .and_then(|off| element_at(m, off as usize))
        .map(|e| match e {
            Some(idx) => format!(" element {}", changes[m.change].elements.describe(idx)),
            None => " element (interval end at the zero key)".to_string(),
        })
        .unwrap_or_default();
    format!(
        "{op} {}{element} (message {} of {total}, seq {})",
        m.set,
        i + 1,
        m.seq
    )
}

/// The element whose nest holds byte `offset` of the message.
fn element_at(m: &MessageInfo, offset: usize) -> Option<Option<usize>> {
    m.nests
        .iter()
        .take_while(|(start, _)| *start <= offset)
        .last()
        .map(|(_, source)| *source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{ElementOp, Elements};

    #[test]
    fn a_refusal_names_the_message_and_the_element_at_the_offset() {
        let changes = [
            ElementChange {
                op: ElementOp::Add,
                set: "wl_known".into(),
                elements: Elements::Ifnames(vec!["cali1".into()]),
            },
            ElementChange {
                op: ElementOp::Delete,
                set: "s4_a".into(),
                elements: Elements::Prefixes {
                    prefixes: vec![
                        "10.65.0.0/24".parse().expect("prefix"),
                        "10.66.0.0/24".parse().expect("prefix"),
                    ],
                    set_was_empty: false,
                },
            },
        ];
        let batch = encode_batch(
            &changes,
            EncodeOptions {
                seq: 100,
                ack: true,
            },
        )
        .expect("encodes");
        let second = &batch.messages[1];
        // The end element of the second prefix (nest 4), a few bytes into it.
        let offset = second.nests[3].0 + 8;
        let acks = [
            Ack {
                seq: 101,
                errno: 0,
                message: None,
                offset: None,
            },
            Ack {
                seq: 102,
                errno: 2,
                message: None,
                offset: Some(offset as u32),
            },
        ];
        let err = verdict(&batch, &changes, &acks).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "kernel refused the batch, nothing applied: DELSETELEM s4_a element \
             10.66.0.0/24 (message 2 of 2, seq 102): ENOENT: No such file or directory"
        );
        let whole = [Ack {
            seq: 100,
            errno: 1,
            message: Some("no".into()),
            offset: None,
        }];
        assert_eq!(
            verdict(&batch, &changes, &whole)
                .expect_err("refused")
                .to_string(),
            "kernel refused the batch, nothing applied: the batch as a whole (BATCH_BEGIN, \
             seq 100): EPERM: Operation not permitted (no)"
        );
        assert!(verdict(&batch, &changes, &acks[..1]).is_ok());
    }
}
