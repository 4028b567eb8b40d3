//! One nf_tables batch of set-element messages: encoding, decoding, and the kernel's
//! replies.
//!
//! ```text
//! NFNL_MSG_BATCH_BEGIN   nfgenmsg{NFPROTO_UNSPEC, res_id = NFNL_SUBSYS_NFTABLES}
//! NFT_MSG_NEWSETELEM     nfgenmsg{NFPROTO_INET}  flags REQUEST|CREATE[|ACK]
//!   NFTA_SET_ELEM_LIST_TABLE    "bulkhead"
//!   NFTA_SET_ELEM_LIST_SET      "s4_…"
//!   NFTA_SET_ELEM_LIST_ELEMENTS (nested)
//!     #1 (nested)  NFTA_SET_ELEM_KEY (nested) { NFTA_DATA_VALUE start }
//!     #2 (nested)  NFTA_SET_ELEM_FLAGS INTERVAL_END, NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE end }
//!     …
//! NFT_MSG_DELSETELEM     nfgenmsg{NFPROTO_INET}  flags REQUEST[|ACK]   (same attributes)
//! NFNL_MSG_BATCH_END     nfgenmsg{NFPROTO_UNSPEC, res_id = NFNL_SUBSYS_NFTABLES}
//! ```
//!
//! Element nests are numbered 1, 2, 3… in each message, as libnftnl numbers them (the
//! kernel ignores the number). The details were read off captures of `nft` itself
//! (`fixtures.rs`, docs/netlink.md).

use ipnet::IpNet;

use super::attr::{DecodeError, RawAttr, Writer, attrs, messages};
use super::consts::*;
use super::element::{
    AddrProtoPort, ElementChange, ElementOp, Elements, SetType, Verdict, addr_key, concat_key,
    ifname_key, interval_keys, interval_prefix,
};
use crate::table::SetKind;

/// The table every message addresses: `inet bulkhead`.
pub const TABLE_NAME: &str = "bulkhead";

/// Largest `NFTA_SET_ELEM_LIST_ELEMENTS` nest we write. An attribute's length is a u16,
/// so longer element lists are split over several messages of the same batch (the
/// batch stays one transaction).
pub const MAX_ELEMENTS_BYTES: usize = 32 * 1024;

/// How to number and flag a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Sequence number of `NFNL_MSG_BATCH_BEGIN`; each following message takes the next.
    pub seq: u32,
    /// Set `NLM_F_ACK` on every element message, so the kernel confirms each one (nft
    /// 1.0.6 does not; it only hears about errors).
    pub ack: bool,
}

/// An encoded batch, and what each of its element messages carries (to name the
/// culprit of an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The bytes for one `sendmsg`.
    pub bytes: Vec<u8>,
    /// Sequence number of `NFNL_MSG_BATCH_BEGIN`.
    pub begin_seq: u32,
    /// Sequence number of `NFNL_MSG_BATCH_END`.
    pub end_seq: u32,
    /// The element messages, in order.
    pub messages: Vec<MessageInfo>,
}

/// One element message of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Its sequence number.
    pub seq: u32,
    /// Index of the [`ElementChange`] it came from.
    pub change: usize,
    /// `NEWSETELEM` or `DELSETELEM`.
    pub op: ElementOp,
    /// The set.
    pub set: String,
    /// For each element nest, its offset from the start of this message and the index
    /// (in the change's elements) of the element it encodes; `None` for the extra
    /// zero-key interval end of a first addition.
    pub nests: Vec<(usize, Option<usize>)>,
}

/// A change this encoder refuses (the caller falls back to `nft`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {set}: {what}")]
pub struct EncodeError {
    /// The set.
    pub set: String,
    /// Why.
    pub what: String,
}

/// One element, ready to be written: its attributes in nft's order.
struct Wire {
    /// `NFTA_SET_ELEM_FLAGS` (written first when present, as nft does).
    flags: Option<u32>,
    key: Vec<u8>,
    verdict: Option<Verdict>,
    /// `NFTA_SET_ELEM_USERDATA`.
    userdata: Option<Vec<u8>>,
    /// Index of the element it encodes (`None`: nft's zero-key interval end).
    source: Option<usize>,
}

impl Wire {
    fn key(key: Vec<u8>, source: usize) -> Wire {
        Wire {
            flags: None,
            key,
            verdict: None,
            userdata: None,
            source: Some(source),
        }
    }

    /// Encoded size of this element's nest.
    fn size(&self) -> usize {
        let mut w = Writer::default();
        self.write(&mut w, 1);
        w.buf.len()
    }

    fn write(&self, w: &mut Writer, number: u16) {
        let nest = w.nest_begin(number);
        if let Some(flags) = self.flags {
            w.attr_be32(NFTA_SET_ELEM_FLAGS, flags);
        }
        let key = w.nest_begin(NFTA_SET_ELEM_KEY);
        w.attr(NFTA_DATA_VALUE, &self.key);
        w.nest_end(key);
        if let Some(v) = &self.verdict {
            let data = w.nest_begin(NFTA_SET_ELEM_DATA);
            let verdict = w.nest_begin(NFTA_DATA_VERDICT);
            let (code, chain) = match v {
                Verdict::Accept => (NF_ACCEPT, None),
                Verdict::Drop => (NF_DROP, None),
                Verdict::Jump(c) => (NFT_JUMP, Some(c)),
                Verdict::Goto(c) => (NFT_GOTO, Some(c)),
            };
            w.attr_be32(NFTA_VERDICT_CODE, code as u32);
            if let Some(chain) = chain {
                w.attr_str(NFTA_VERDICT_CHAIN, chain);
            }
            w.nest_end(verdict);
            w.nest_end(data);
        }
        if let Some(u) = &self.userdata {
            w.attr(NFTA_SET_ELEM_USERDATA, u);
        }
        w.nest_end(nest);
    }
}

/// libnftnl's user data marking an interval start with no end element.
fn open_interval_userdata() -> Vec<u8> {
    let mut u = vec![NFTNL_UDATA_SET_ELEM_FLAGS, 4];
    u.extend_from_slice(&NFTNL_SET_ELEM_F_INTERVAL_OPEN.to_ne_bytes());
    u
}

/// The elements of one change as wire elements, in groups that must stay in one
/// message (an interval's start and end).
fn wire_elements(change: &ElementChange) -> Result<Vec<Vec<Wire>>, EncodeError> {
    let err = |what: String| EncodeError {
        set: change.set.clone(),
        what,
    };
    let add = change.op == ElementOp::Add;
    let mut groups = Vec::new();
    match &change.elements {
        Elements::Prefixes {
            prefixes,
            set_was_empty,
        } => {
            let Some(first) = prefixes.first() else {
                return Ok(groups);
            };
            let v4 = matches!(first, IpNet::V4(_));
            let mut sorted: Vec<(usize, &IpNet)> = prefixes.iter().enumerate().collect();
            for (_, p) in &sorted {
                if matches!(p, IpNet::V4(_)) != v4 {
                    return Err(err(format!("{p} mixes address families")));
                }
                if p.trunc() != **p {
                    return Err(err(format!("{p} has host bits set")));
                }
            }
            // nft sends an interval set's elements in address order.
            sorted.sort_by_key(|(_, p)| (p.network(), p.prefix_len()));
            let starts_at_zero = match sorted[0].1 {
                IpNet::V4(n) => u32::from(n.network()) == 0,
                IpNet::V6(n) => u128::from(n.network()) == 0,
            };
            if add && *set_was_empty && !starts_at_zero {
                groups.push(vec![Wire {
                    flags: Some(NFT_SET_ELEM_INTERVAL_END),
                    key: vec![0; if v4 { 4 } else { 16 }],
                    verdict: None,
                    userdata: None,
                    source: None,
                }]);
            }
            for (i, p) in sorted {
                let (start, end) = interval_keys(p);
                let mut group = vec![Wire::key(start, i)];
                match end {
                    Some(end) => group.push(Wire {
                        flags: Some(NFT_SET_ELEM_INTERVAL_END),
                        ..Wire::key(end, i)
                    }),
                    None => group[0].userdata = Some(open_interval_userdata()),
                }
                groups.push(group);
            }
        }
        Elements::Addresses(v) => {
            for (i, a) in v.iter().enumerate() {
                groups.push(vec![Wire::key(addr_key(*a), i)]);
            }
        }
        Elements::AddrProtoPorts(v) => {
            for (i, e) in v.iter().enumerate() {
                groups.push(vec![Wire::key(concat_key(e), i)]);
            }
        }
        Elements::Ifnames(v) => {
            for (i, name) in v.iter().enumerate() {
                check_ifname(name).map_err(err)?;
                groups.push(vec![Wire::key(ifname_key(name), i)]);
            }
        }
        Elements::Verdicts(v) => {
            if !add {
                return Err(err(
                    "a deletion names map keys only (Elements::Ifnames)".into()
                ));
            }
            for (i, (name, verdict)) in v.iter().enumerate() {
                check_ifname(name).map_err(err)?;
                if let Verdict::Jump(c) | Verdict::Goto(c) = verdict
                    && (c.is_empty() || c.len() >= NFT_NAME_MAXLEN || c.contains('\0'))
                {
                    return Err(err(format!("bad chain name {c:?}")));
                }
                groups.push(vec![Wire {
                    verdict: Some(verdict.clone()),
                    ..Wire::key(ifname_key(name), i)
                }]);
            }
        }
    }
    Ok(groups)
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
        Err(format!("{name:?} is not an interface name"))
    } else {
        Ok(())
    }
}

/// Encodes `changes` as one batch. Changes with no elements send nothing; a change
/// whose elements exceed [`MAX_ELEMENTS_BYTES`] becomes several messages.
pub fn encode_batch(changes: &[ElementChange], opts: EncodeOptions) -> Result<Batch, EncodeError> {
    let mut w = Writer::default();
    let mut seq = opts.seq;
    let begin = w.begin_msg(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_msg(begin);
    let mut infos = Vec::new();
    for (index, change) in changes.iter().enumerate() {
        if change.set.is_empty() || change.set.len() >= NFT_NAME_MAXLEN || change.set.contains('\0')
        {
            return Err(EncodeError {
                set: change.set.clone(),
                what: "bad set name".into(),
            });
        }
        let (msg_type, mut flags) = match change.op {
            ElementOp::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE),
            ElementOp::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST),
        };
        if opts.ack {
            flags |= NLM_F_ACK;
        }
        let groups = wire_elements(change)?;
        let mut groups = groups.into_iter().peekable();
        while groups.peek().is_some() {
            seq = seq.wrapping_add(1);
            let start = w.begin_msg(
                (NFNL_SUBSYS_NFTABLES << 8) | msg_type,
                flags,
                seq,
                NFPROTO_INET,
                0,
            );
            w.attr_str(NFTA_SET_ELEM_LIST_TABLE, TABLE_NAME);
            w.attr_str(NFTA_SET_ELEM_LIST_SET, &change.set);
            let list = w.nest_begin(NFTA_SET_ELEM_LIST_ELEMENTS);
            let mut nests = Vec::new();
            let mut number: u16 = 0;
            while let Some(group) = groups.peek() {
                let size: usize = group.iter().map(Wire::size).sum();
                if !nests.is_empty() && w.buf.len() - list + size > MAX_ELEMENTS_BYTES {
                    break;
                }
                for wire in groups.next().expect("peeked") {
                    number = number.wrapping_add(1);
                    nests.push((w.buf.len() - start, wire.source));
                    wire.write(&mut w, number);
                }
            }
            w.nest_end(list);
            w.end_msg(start);
            infos.push(MessageInfo {
                seq,
                change: index,
                op: change.op,
                set: change.set.clone(),
                nests,
            });
        }
    }
    seq = seq.wrapping_add(1);
    let end = w.begin_msg(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    w.end_msg(end);
    Ok(Batch {
        bytes: w.buf,
        begin_seq: opts.seq,
        end_seq: seq,
        messages: infos,
    })
}

// Decoding ---------------------------------------------------------------------------------

/// A decoded message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// What it is.
    pub body: Body,
}

/// The body of a decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// `NFNL_MSG_BATCH_BEGIN` for `res_id`.
    BatchBegin {
        /// The subsystem (`NFNL_SUBSYS_NFTABLES`).
        res_id: u16,
    },
    /// `NFNL_MSG_BATCH_END` for `res_id`.
    BatchEnd {
        /// The subsystem.
        res_id: u16,
    },
    /// `NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM`.
    SetElems(SetElemMsg),
    /// Anything else: its type and payload.
    Other {
        /// `nlmsg_type`.
        ty: u16,
        /// Payload after the `nlmsghdr`.
        payload: Vec<u8>,
    },
}

/// A set-element message, attribute by attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElemMsg {
    /// Add or delete.
    pub op: ElementOp,
    /// `nfgen_family`.
    pub family: u8,
    /// `NFTA_SET_ELEM_LIST_TABLE`.
    pub table: String,
    /// `NFTA_SET_ELEM_LIST_SET`.
    pub set: String,
    /// `NFTA_SET_ELEM_LIST_SET_ID` (nft sends one on additions; it only matters for a
    /// set created in the same batch, and we never send it).
    pub set_id: Option<u32>,
    /// The elements.
    pub elements: Vec<RawElement>,
}

/// One element of a set-element message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawElement {
    /// `NFTA_SET_ELEM_FLAGS` (0 when absent).
    pub flags: u32,
    /// `NFTA_SET_ELEM_KEY` / `NFTA_DATA_VALUE`.
    pub key: Vec<u8>,
    /// `NFTA_SET_ELEM_KEY_END` / `NFTA_DATA_VALUE` (concatenated interval sets only).
    pub key_end: Option<Vec<u8>>,
    /// `NFTA_SET_ELEM_DATA`.
    pub data: Option<ElementData>,
    /// `NFTA_SET_ELEM_USERDATA`.
    pub userdata: Option<Vec<u8>>,
    /// Attributes not listed above: (type, value).
    pub other: Vec<(u16, Vec<u8>)>,
}

/// A mapping's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementData {
    /// `NFTA_DATA_VALUE`.
    Value(Vec<u8>),
    /// `NFTA_DATA_VERDICT`: code and chain.
    Verdict {
        /// `NFTA_VERDICT_CODE`.
        code: i32,
        /// `NFTA_VERDICT_CHAIN`.
        chain: Option<String>,
    },
}

/// Decodes a batch (or any sequence of nfnetlink messages) attribute by attribute.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
    messages(buf)?
        .into_iter()
        .map(|m| {
            let at = m.offset + NLMSG_HDRLEN;
            if m.payload.len() < NFGENMSG_LEN {
                return Err(DecodeError::new(at, "truncated nfgenmsg"));
            }
            let family = m.payload[0];
            let res_id = u16::from_be_bytes([m.payload[2], m.payload[3]]);
            let body = match m.ty {
                NFNL_MSG_BATCH_BEGIN => Body::BatchBegin { res_id },
                NFNL_MSG_BATCH_END => Body::BatchEnd { res_id },
                t if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM => Body::SetElems(
                    decode_setelem(ElementOp::Add, family, &m.payload[4..], at + 4)?,
                ),
                t if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM => Body::SetElems(
                    decode_setelem(ElementOp::Delete, family, &m.payload[4..], at + 4)?,
                ),
                ty => Body::Other {
                    ty,
                    payload: m.payload.to_vec(),
                },
            };
            Ok(Decoded {
                seq: m.seq,
                flags: m.flags,
                body,
            })
        })
        .collect()
}

fn decode_setelem(
    op: ElementOp,
    family: u8,
    buf: &[u8],
    base: usize,
) -> Result<SetElemMsg, DecodeError> {
    let mut msg = SetElemMsg {
        op,
        family,
        table: String::new(),
        set: String::new(),
        set_id: None,
        elements: Vec::new(),
    };
    for a in attrs(buf, base)? {
        match a.ty {
            NFTA_SET_ELEM_LIST_TABLE => msg.table = a.string()?,
            NFTA_SET_ELEM_LIST_SET => msg.set = a.string()?,
            NFTA_SET_ELEM_LIST_SET_ID => msg.set_id = Some(a.be32()?),
            NFTA_SET_ELEM_LIST_ELEMENTS => {
                for e in a.nested_attrs()? {
                    msg.elements.push(decode_element(&e)?);
                }
            }
            _ => {}
        }
    }
    Ok(msg)
}

fn data_value(a: &RawAttr<'_>) -> Result<Vec<u8>, DecodeError> {
    a.nested_attrs()?
        .into_iter()
        .find(|d| d.ty == NFTA_DATA_VALUE)
        .map(|d| d.value.to_vec())
        .ok_or_else(|| DecodeError::new(a.offset, "key without NFTA_DATA_VALUE"))
}

fn decode_element(e: &RawAttr<'_>) -> Result<RawElement, DecodeError> {
    let mut el = RawElement::default();
    for a in e.nested_attrs()? {
        match a.ty {
            NFTA_SET_ELEM_FLAGS => el.flags = a.be32()?,
            NFTA_SET_ELEM_KEY => el.key = data_value(&a)?,
            NFTA_SET_ELEM_KEY_END => el.key_end = Some(data_value(&a)?),
            NFTA_SET_ELEM_USERDATA => el.userdata = Some(a.value.to_vec()),
            NFTA_SET_ELEM_DATA => {
                let inner = a.nested_attrs()?;
                el.data = match inner.first() {
                    Some(d) if d.ty == NFTA_DATA_VALUE => {
                        Some(ElementData::Value(d.value.to_vec()))
                    }
                    Some(d) if d.ty == NFTA_DATA_VERDICT => {
                        let mut code = None;
                        let mut chain = None;
                        for v in d.nested_attrs()? {
                            match v.ty {
                                NFTA_VERDICT_CODE => code = Some(v.be32()? as i32),
                                NFTA_VERDICT_CHAIN => chain = Some(v.string()?),
                                _ => {}
                            }
                        }
                        Some(ElementData::Verdict {
                            code: code.ok_or_else(|| {
                                DecodeError::new(d.offset, "verdict without a code")
                            })?,
                            chain,
                        })
                    }
                    _ => return Err(DecodeError::new(a.offset, "empty element data")),
                };
            }
            ty => el.other.push((ty, a.value.to_vec())),
        }
    }
    Ok(el)
}

/// Reads a decoded set-element message back as the change it encodes, given the type
/// of its set. The inverse of [`encode_batch`] for one message.
pub fn to_change(msg: &SetElemMsg, ty: SetType) -> Result<ElementChange, DecodeError> {
    let bad = |what: String| DecodeError::new(0, format!("set {}: {what}", msg.set));
    let elements = match ty {
        SetType::Set(SetKind::Ipv4 | SetKind::Ipv6) => {
            let width = if ty == SetType::Set(SetKind::Ipv4) {
                4
            } else {
                16
            };
            let mut prefixes = Vec::new();
            let mut set_was_empty = false;
            let mut it = msg.elements.iter().enumerate().peekable();
            while let Some((i, e)) = it.next() {
                if e.key.len() != width {
                    return Err(bad(format!("element {i}: key of {} bytes", e.key.len())));
                }
                if e.flags & NFT_SET_ELEM_INTERVAL_END != 0 {
                    if i == 0 && e.key.iter().all(|b| *b == 0) && msg.op == ElementOp::Add {
                        set_was_empty = true;
                        continue;
                    }
                    return Err(bad(format!("element {i}: interval end without a start")));
                }
                let open = e.userdata.as_deref() == Some(&open_interval_userdata()[..]);
                let end = if open {
                    None
                } else {
                    match it.next() {
                        Some((_, n)) if n.flags & NFT_SET_ELEM_INTERVAL_END != 0 => {
                            Some(n.key.as_slice())
                        }
                        _ => return Err(bad(format!("element {i}: interval start without end"))),
                    }
                };
                prefixes.push(
                    interval_prefix(&e.key, end)
                        .ok_or_else(|| bad(format!("element {i}: interval is not a prefix")))?,
                );
            }
            Elements::Prefixes {
                prefixes,
                set_was_empty,
            }
        }
        SetType::Set(kind @ (SetKind::Ipv4Hosts | SetKind::Ipv6Hosts)) => {
            Elements::Addresses(addressed(msg, kind, 0, |addr, _| addr)?)
        }
        SetType::Set(kind @ (SetKind::Ipv4Port | SetKind::Ipv6Port)) => {
            // After the address: protocol, then port (big-endian), each in a register.
            let v = addressed(msg, kind, 8, |addr, rest| AddrProtoPort {
                addr,
                proto: rest[0],
                port: u16::from_be_bytes([rest[4], rest[5]]),
            })?;
            Elements::AddrProtoPorts(v)
        }
        SetType::Set(SetKind::Ifname) | SetType::VerdictMap => {
            let names: Vec<String> = msg
                .elements
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    if e.key.len() != IFNAMSIZ {
                        return Err(bad(format!("element {i}: key of {} bytes", e.key.len())));
                    }
                    let end = e.key.iter().position(|b| *b == 0).unwrap_or(IFNAMSIZ);
                    String::from_utf8(e.key[..end].to_vec())
                        .map_err(|_| bad(format!("element {i}: name is not UTF-8")))
                })
                .collect::<Result<_, _>>()?;
            if ty == SetType::VerdictMap && msg.op == ElementOp::Add {
                let verdicts = msg
                    .elements
                    .iter()
                    .zip(names)
                    .map(|(e, name)| match &e.data {
                        Some(ElementData::Verdict { code, chain }) => {
                            let v = match (*code, chain) {
                                (NF_ACCEPT, None) => Verdict::Accept,
                                (NF_DROP, None) => Verdict::Drop,
                                (NFT_JUMP, Some(c)) => Verdict::Jump(c.clone()),
                                (NFT_GOTO, Some(c)) => Verdict::Goto(c.clone()),
                                other => return Err(bad(format!("verdict {other:?}"))),
                            };
                            Ok((name, v))
                        }
                        _ => Err(bad(format!("{name}: map element without a verdict"))),
                    })
                    .collect::<Result<_, _>>()?;
                Elements::Verdicts(verdicts)
            } else {
                Elements::Ifnames(names)
            }
        }
    };
    Ok(ElementChange {
        op: msg.op,
        set: msg.set.clone(),
        elements,
    })
}

/// The elements of `msg`, a set of `kind` keyed by an address then `rest` more bytes,
/// each made by `make` from the address and those bytes.
fn addressed<T>(
    msg: &SetElemMsg,
    kind: SetKind,
    rest: usize,
    make: impl Fn(std::net::IpAddr, &[u8]) -> T,
) -> Result<Vec<T>, DecodeError> {
    let v4 = matches!(kind, SetKind::Ipv4Hosts | SetKind::Ipv4Port);
    let width = if v4 { 4 } else { 16 };
    msg.elements
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let addr = match e.key.get(..width) {
                Some(a) if e.key.len() == width + rest && v4 => {
                    <[u8; 4]>::try_from(a).ok().map(std::net::IpAddr::from)
                }
                Some(a) if e.key.len() == width + rest => {
                    <[u8; 16]>::try_from(a).ok().map(std::net::IpAddr::from)
                }
                _ => None,
            };
            addr.map(|addr| make(addr, &e.key[width..])).ok_or_else(|| {
                DecodeError::new(
                    0,
                    format!("set {}: element {i}: key of {} bytes", msg.set, e.key.len()),
                )
            })
        })
        .collect()
}

// Replies -------------------------------------------------------------------------------

/// The kernel's answer to one message: an `NLMSG_ERROR`, which is an ack when `errno`
/// is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Sequence number of the message answered.
    pub seq: u32,
    /// 0 for success, else a positive errno (`EEXIST`, `ENOENT`, …).
    pub errno: i32,
    /// `NLMSGERR_ATTR_MSG`, the kernel's extended ack text, if any.
    pub message: Option<String>,
    /// `NLMSGERR_ATTR_OFFS`: offset of the offending attribute in the message answered.
    pub offset: Option<u32>,
}

/// Reads every `NLMSG_ERROR` in a buffer of replies (other messages are skipped; an
/// `NLMSG_OVERRUN` is an error).
pub fn decode_acks(buf: &[u8]) -> Result<Vec<Ack>, DecodeError> {
    let mut out = Vec::new();
    for m in messages(buf)? {
        match m.ty {
            NLMSG_ERROR => {
                let at = m.offset + NLMSG_HDRLEN;
                if m.payload.len() < 4 + NLMSG_HDRLEN {
                    return Err(DecodeError::new(at, "truncated nlmsgerr"));
                }
                let error = i32::from_ne_bytes(m.payload[0..4].try_into().expect("4 bytes"));
                let inner = &m.payload[4..4 + NLMSG_HDRLEN];
                let inner_len = u32::from_ne_bytes(inner[0..4].try_into().expect("4")) as usize;
                let seq = u32::from_ne_bytes(inner[8..12].try_into().expect("4 bytes"));
                let mut ack = Ack {
                    seq,
                    errno: -error,
                    message: None,
                    offset: None,
                };
                if m.flags & NLM_F_ACK_TLVS != 0 {
                    let tlv_at = if m.flags & NLM_F_CAPPED != 0 {
                        4 + NLMSG_HDRLEN
                    } else {
                        4 + super::attr::align(inner_len)
                    };
                    if tlv_at <= m.payload.len() {
                        for a in attrs(&m.payload[tlv_at..], at + tlv_at)? {
                            match a.ty {
                                NLMSGERR_ATTR_MSG => ack.message = Some(a.string()?),
                                NLMSGERR_ATTR_OFFS => ack.offset = Some(a.ne32()?),
                                _ => {}
                            }
                        }
                    }
                }
                out.push(ack);
            }
            NLMSG_OVERRUN => return Err(DecodeError::new(m.offset, "NLMSG_OVERRUN")),
            NLMSG_DONE => {}
            _ => {}
        }
    }
    Ok(out)
}
