//! Netlink framing: messages (`struct nlmsghdr` + `struct nfgenmsg`) and attributes
//! (`struct nlattr` TLVs, 4-byte aligned, nests flagged `NLA_F_NESTED`), written into one
//! buffer and read back from one. Host byte order for the headers, as the kernel wants.

use super::consts::*;

/// A malformed netlink buffer, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed netlink data at byte {offset}: {what}")]
pub struct DecodeError {
    /// Offset in the buffer being read.
    pub offset: usize,
    /// What was wrong.
    pub what: String,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, what: impl Into<String>) -> Self {
        DecodeError {
            offset,
            what: what.into(),
        }
    }
}

/// Rounds `len` up to the netlink alignment (4).
pub(crate) const fn align(len: usize) -> usize {
    (len + NLA_ALIGNTO - 1) & !(NLA_ALIGNTO - 1)
}

/// Appends messages and attributes to one buffer (a whole batch).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    /// Starts a message: `nlmsghdr` (length filled in by [`Writer::end_msg`]) and
    /// `nfgenmsg`. Returns the message's offset.
    pub(crate) fn begin_msg(
        &mut self,
        ty: u16,
        flags: u16,
        seq: u32,
        family: u8,
        res_id: u16,
    ) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel's
        self.buf.push(family);
        self.buf.push(NFNETLINK_V0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Closes the message started at `start`.
    pub(crate) fn end_msg(&mut self, start: usize) {
        let len = u32::try_from(self.buf.len() - start).expect("a message fits in u32");
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An attribute holding `data`, padded to 4 bytes.
    pub(crate) fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(NLA_HDRLEN + data.len()).expect("attribute under 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    /// A big-endian u32 attribute (`NLA_U32` in nf_tables is network byte order).
    pub(crate) fn attr_be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// A NUL-terminated string attribute (`NLA_STRING`/`NLA_NUL_STRING`).
    pub(crate) fn attr_str(&mut self, ty: u16, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(0);
        self.attr(ty, &data);
    }

    /// Opens a nested attribute (`ty | NLA_F_NESTED`); close it with [`Writer::nest_end`].
    pub(crate) fn nest_begin(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    /// Closes the nest opened at `start`. Panics if it grew past 64 KiB: callers split
    /// element lists well below that ([`super::message::MAX_ELEMENTS_BYTES`]).
    pub(crate) fn nest_end(&mut self, start: usize) {
        let len = u16::try_from(self.buf.len() - start).expect("nest under 64 KiB");
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// One netlink message in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawMsg<'a> {
    /// Offset of its `nlmsghdr` in the buffer.
    pub(crate) offset: usize,
    pub(crate) ty: u16,
    pub(crate) flags: u16,
    pub(crate) seq: u32,
    pub(crate) pid: u32,
    /// Everything after the `nlmsghdr`.
    pub(crate) payload: &'a [u8],
}

/// Splits a buffer into messages.
pub(crate) fn messages(buf: &[u8]) -> Result<Vec<RawMsg<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < NLMSG_HDRLEN {
            return Err(DecodeError::new(at, "truncated nlmsghdr"));
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(DecodeError::new(at, format!("bad nlmsg_len {len}")));
        }
        out.push(RawMsg {
            offset: at,
            ty: u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes")),
            flags: u16::from_ne_bytes(rest[6..8].try_into().expect("2 bytes")),
            seq: u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes")),
            pid: u32::from_ne_bytes(rest[12..16].try_into().expect("4 bytes")),
            payload: &rest[NLMSG_HDRLEN..len],
        });
        at += align(len);
    }
    Ok(out)
}

/// One attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawAttr<'a> {
    /// Offset of its header, relative to whatever buffer the caller counts from.
    pub(crate) offset: usize,
    /// Type without the `NLA_F_NESTED`/`NLA_F_NET_BYTEORDER` bits.
    pub(crate) ty: u16,
    pub(crate) nested: bool,
    pub(crate) value: &'a [u8],
}

/// Splits `buf` (which starts at `base` in the caller's numbering) into attributes.
pub(crate) fn attrs(buf: &[u8], base: usize) -> Result<Vec<RawAttr<'_>>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < NLA_HDRLEN {
            return Err(DecodeError::new(base + at, "truncated nlattr"));
        }
        let len = u16::from_ne_bytes(rest[0..2].try_into().expect("2 bytes")) as usize;
        let ty = u16::from_ne_bytes(rest[2..4].try_into().expect("2 bytes"));
        if len < NLA_HDRLEN || len > rest.len() {
            return Err(DecodeError::new(base + at, format!("bad nla_len {len}")));
        }
        out.push(RawAttr {
            offset: base + at,
            ty: ty & NLA_TYPE_MASK,
            nested: ty & NLA_F_NESTED != 0,
            value: &rest[NLA_HDRLEN..len],
        });
        at += align(len);
    }
    Ok(out)
}

impl RawAttr<'_> {
    /// The attributes nested in this one.
    pub(crate) fn nested_attrs(&self) -> Result<Vec<RawAttr<'_>>, DecodeError> {
        attrs(self.value, self.offset + NLA_HDRLEN)
    }

    /// A big-endian u32 value.
    pub(crate) fn be32(&self) -> Result<u32, DecodeError> {
        let b: [u8; 4] = self
            .value
            .try_into()
            .map_err(|_| DecodeError::new(self.offset, "expected a 4-byte value"))?;
        Ok(u32::from_be_bytes(b))
    }

    /// A host-order u32 value.
    pub(crate) fn ne32(&self) -> Result<u32, DecodeError> {
        let b: [u8; 4] = self
            .value
            .try_into()
            .map_err(|_| DecodeError::new(self.offset, "expected a 4-byte value"))?;
        Ok(u32::from_ne_bytes(b))
    }

    /// A string, up to its NUL.
    pub(crate) fn string(&self) -> Result<String, DecodeError> {
        let end = self
            .value
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.value.len());
        String::from_utf8(self.value[..end].to_vec())
            .map_err(|_| DecodeError::new(self.offset, "string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_measure_their_padded_content() {
        let mut w = Writer::default();
        let nest = w.nest_begin(3);
        w.attr_str(1, "s4_x"); // 4 + 5 bytes, padded to 12
        w.attr_be32(2, 1);
        w.nest_end(nest);
        assert_eq!(
            w.buf,
            [
                24, 0, 3, 0x80, // nest: len 24, type 3 | NLA_F_NESTED
                9, 0, 1, 0, b's', b'4', b'_', b'x', 0, 0, 0, 0, // string + padding
                8, 0, 2, 0, 0, 0, 0, 1, // big-endian u32
            ]
        );
        let outer = attrs(&w.buf, 0).expect("parses");
        assert_eq!(outer.len(), 1);
        assert!(outer[0].nested);
        let inner = outer[0].nested_attrs().expect("parses");
        assert_eq!(inner[0].string().expect("string"), "s4_x");
        assert_eq!(inner[0].offset, 4);
        assert_eq!(inner[1].be32().expect("u32"), 1);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        assert!(attrs(&[8, 0, 1, 0, 0], 0).is_err());
        assert!(attrs(&[2, 0, 1, 0], 0).is_err());
        assert!(messages(&[40, 0, 0, 0, 2, 0, 0, 0]).is_err());
        assert!(messages(&[8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
