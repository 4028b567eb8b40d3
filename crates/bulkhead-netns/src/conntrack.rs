//! Emptying a namespace's conntrack table, so the next probes are new flows.
//!
//! A probe stands for a *new* connection, but conntrack remembers flows: after a policy
//! change, a UDP probe whose random source port happens to equal an earlier allowed
//! probe's (same addresses, same service, within the entry's 30 s) is taken for that flow
//! and passes `ct state established` whatever the policy now says. Tests that compare
//! probes with the model after a change empty the table first.
//!
//! One `IPCTNL_MSG_CT_DELETE` without a tuple (`linux/netfilter/nfnetlink_conntrack.h`)
//! on a `NETLINK_NETFILTER` socket opened inside the namespace deletes every entry of
//! every family there, as `conntrack -F` does; the kernel's acknowledgement says whether
//! it did.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// `NFNL_SUBSYS_CTNETLINK`.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// `NLM_F_REQUEST | NLM_F_ACK`.
const FLAGS: u16 = 0x01 | 0x04;
/// `NLMSG_ERROR`: the acknowledgement (error 0) or the refusal.
const NLMSG_ERROR: u16 = 2;
/// How long the kernel gets to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The flush request with sequence number `seq`: a netlink header and a `nfgenmsg` for
/// every family (`AF_UNSPEC`), nothing else.
fn flush_request(seq: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0..4].copy_from_slice(&20u32.to_ne_bytes());
    out[4..6].copy_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    out[6..8].copy_from_slice(&FLAGS.to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    // Port id 0 (the kernel), family AF_UNSPEC, version 0, res_id 0.
    out
}

/// The answer to request `seq` in `buf`: `Some(0)` acknowledged, `Some(errno)` refused,
/// `None` not in this buffer.
fn answer(buf: &[u8], seq: u32) -> Option<i32> {
    let mut at = 0;
    while buf.len() >= at + 16 {
        let word = |i: usize| {
            [
                buf[at + i],
                buf[at + i + 1],
                buf[at + i + 2],
                buf[at + i + 3],
            ]
        };
        let len = u32::from_ne_bytes(word(0)) as usize;
        let ty = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let msg_seq = u32::from_ne_bytes(word(8));
        if len < 16 || at + len > buf.len() {
            return None;
        }
        if ty == NLMSG_ERROR && msg_seq == seq && len >= 20 {
            return Some(-i32::from_ne_bytes(word(16)));
        }
        at += len.next_multiple_of(4);
    }
    None
}

impl Netns {
    /// Deletes every conntrack entry of this namespace (both families). Succeeds when
    /// there was nothing to delete, also where conntrack was never loaded.
    pub fn flush_conntrack(&self) -> Result<()> {
        let io = |context: &str, e: Errno| Error::io(context, e.into());
        let fd = self
            .run_in(|| {
                socket(
                    AddressFamily::Netlink,
                    SockType::Raw,
                    SockFlag::SOCK_CLOEXEC,
                    SockProtocol::NetlinkNetFilter,
                )
            })?
            .map_err(|e| io("netlink socket", e))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|e| io("netlink bind", e))?;
        let seq = 1;
        send(fd.as_raw_fd(), &flush_request(seq), MsgFlags::empty())
            .map_err(|e| io("sending the conntrack flush", e))?;
        let mut buf = [0u8; 4096];
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        loop {
            let timeout = PollTimeout::try_from(ANSWER_TIMEOUT).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(0) => return Err(io("waiting for the conntrack flush", Errno::ETIMEDOUT)),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(io("waiting for the conntrack flush", e)),
            }
            let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => return Err(io("reading the conntrack flush answer", e)),
            };
            match answer(&buf[..n], seq) {
                Some(0) => return Ok(()),
                // Nothing to flush where conntrack never tracked anything.
                Some(errno) if errno == Errno::ENOENT as i32 => return Ok(()),
                Some(errno) => {
                    return Err(io("flushing conntrack", Errno::from_raw(errno)));
                }
                None => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_header_and_an_unspec_nfgenmsg() {
        let m = flush_request(7);
        assert_eq!(u32::from_ne_bytes([m[0], m[1], m[2], m[3]]), 20);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x102);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x05);
        assert_eq!(u32::from_ne_bytes([m[8], m[9], m[10], m[11]]), 7);
        assert_eq!(&m[12..], &[0u8; 8]);
    }

    #[test]
    fn the_answer_is_the_error_message_of_the_same_sequence() {
        let ack = |seq: u32, error: i32| -> Vec<u8> {
            let mut m = Vec::new();
            m.extend_from_slice(&36u32.to_ne_bytes());
            m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            m.extend_from_slice(&0u16.to_ne_bytes());
            m.extend_from_slice(&seq.to_ne_bytes());
            m.extend_from_slice(&0u32.to_ne_bytes());
            m.extend_from_slice(&error.to_ne_bytes());
            m.extend_from_slice(&flush_request(seq)[..16]);
            m
        };
        assert_eq!(answer(&ack(3, 0), 3), Some(0));
        assert_eq!(answer(&ack(3, -1), 3), Some(1));
        assert_eq!(answer(&ack(2, 0), 3), None);
        let two = [ack(2, 0), ack(3, -2)].concat();
        assert_eq!(answer(&two, 3), Some(2));
        assert_eq!(answer(&two[..10], 3), None);
    }
}
