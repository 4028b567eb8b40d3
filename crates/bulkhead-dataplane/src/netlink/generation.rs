//! The ruleset generation: the kernel numbers every committed nf_tables transaction of a
//! network namespace (`NFT_MSG_GETGEN` → `NFT_MSG_NEWGEN` with `NFTA_GEN_ID`). A number
//! unchanged since Bulkhead's own last commit means nobody else changed any table there,
//! which is how the agent watches for tampering without listing its (large) table.

use super::attr::{DecodeError, attrs, messages};
use super::consts::{
    NFGENMSG_LEN, NFNETLINK_V0, NFNL_SUBSYS_NFTABLES, NFPROTO_UNSPEC, NLM_F_REQUEST, NLMSG_ERROR,
    NLMSG_HDRLEN,
};

/// `NFT_MSG_NEWGEN`: the answer.
const NFT_MSG_NEWGEN: u16 = 15;
/// `NFT_MSG_GETGEN`: the question.
const NFT_MSG_GETGEN: u16 = 16;
/// `NFTA_GEN_ID`: the generation, a big-endian u32.
const NFTA_GEN_ID: u16 = 1;

/// The `NFT_MSG_GETGEN` request with sequence number `seq`.
pub fn encode_getgen(seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + NFGENMSG_LEN) as u32;
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[NFPROTO_UNSPEC, NFNETLINK_V0, 0, 0]);
    out
}

/// What a buffer of replies says about the request `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenReply {
    /// The generation.
    Generation(u32),
    /// The kernel refused the request (positive errno).
    Refused(i32),
    /// Nothing in this buffer answers `seq`.
    Nothing,
}

/// Finds the answer to the request `seq` in `buf`.
pub fn decode_generation(buf: &[u8], seq: u32) -> Result<GenReply, DecodeError> {
    for m in messages(buf)?.into_iter().filter(|m| m.seq == seq) {
        let at = m.offset + NLMSG_HDRLEN;
        if m.ty == NLMSG_ERROR {
            let code = m
                .payload
                .get(0..4)
                .ok_or_else(|| DecodeError::new(at, "truncated nlmsgerr"))?;
            let error = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
            if error != 0 {
                return Ok(GenReply::Refused(-error));
            }
            continue;
        }
        if m.ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
            continue;
        }
        let body = m
            .payload
            .get(NFGENMSG_LEN..)
            .ok_or_else(|| DecodeError::new(at, "truncated nfgenmsg"))?;
        for a in attrs(body, at + NFGENMSG_LEN)? {
            if a.ty == NFTA_GEN_ID
                && let Ok(id) = <[u8; 4]>::try_from(a.value)
            {
                return Ok(GenReply::Generation(u32::from_be_bytes(id)));
            }
        }
        return Err(DecodeError::new(at, "NEWGEN without NFTA_GEN_ID"));
    }
    Ok(GenReply::Nothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_bare_nfgenmsg() {
        let m = encode_getgen(7);
        assert_eq!(m.len(), 20);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (10 << 8) | 16);
        assert_eq!(u32::from_ne_bytes([m[8], m[9], m[10], m[11]]), 7);
    }

    #[test]
    fn the_answer_carries_the_generation_big_endian() {
        // NEWGEN for seq 7: nfgenmsg, NFTA_GEN_ID = 0x35, NFTA_GEN_PROC_PID and
        // NFTA_GEN_PROC_NAME, as strace showed the kernel answer nft's own GETGEN.
        let attributes: Vec<u8> = [
            [8u8, 0, 1, 0, 0, 0, 0, 0x35],
            [8, 0, 2, 0, 0xe5, 0x78, 0, 0],
            [8, 0, 3, 0, b'n', b'f', b't', 0],
        ]
        .concat();
        let len = (16 + 4 + attributes.len()) as u32;
        let mut reply = Vec::new();
        reply.extend_from_slice(&len.to_ne_bytes());
        reply.extend_from_slice(&((10u16 << 8) | 15).to_ne_bytes());
        reply.extend_from_slice(&0u16.to_ne_bytes());
        reply.extend_from_slice(&7u32.to_ne_bytes());
        reply.extend_from_slice(&0u32.to_ne_bytes());
        reply.extend_from_slice(&[0, 0, 0, 0x35]);
        reply.extend_from_slice(&attributes);
        assert_eq!(decode_generation(&reply, 7), Ok(GenReply::Generation(0x35)));
        assert_eq!(decode_generation(&reply, 8), Ok(GenReply::Nothing));
    }
}
