//! Golden bytes: what `nft` sent (fixtures.rs, captured by capture.sh) against what the
//! encoder writes for the same change, and the captures decoded back into changes.
//!
//! Normalisation before comparing (and nothing else): sequence numbers are made relative
//! to the batch's first (nft 1.0.6 happens to start at 0; the encoder is given 0), port
//! ids are zeroed (the kernel's to assign; nft sends 0 anyway), and the
//! `NFTA_SET_ELEM_LIST_SET_ID` attribute nft adds to every addition is dropped: it names
//! a set by its id within the same transaction, which only matters for a set created in
//! that batch, and the encoder never sends it. The encoder is run with `ack: false`,
//! like nft; a separate test checks that `ack: true` changes only `NLM_F_ACK`.

use std::net::IpAddr;

use super::attr::{Writer, attrs, messages};
use super::consts::*;
use super::fixtures::*;
use super::*;
use crate::table::SetKind;

fn prefixes(p: &[&str], set_was_empty: bool) -> Elements {
    Elements::Prefixes {
        prefixes: p.iter().map(|p| p.parse().expect("prefix")).collect(),
        set_was_empty,
    }
}

fn tuples(t: &[(&str, u8, u16)]) -> Elements {
    Elements::AddrProtoPorts(
        t.iter()
            .map(|(a, proto, port)| AddrProtoPort {
                addr: a.parse::<IpAddr>().expect("address"),
                proto: *proto,
                port: *port,
            })
            .collect(),
    )
}

fn addresses(a: &[&str]) -> Elements {
    Elements::Addresses(a.iter().map(|a| a.parse().expect("address")).collect())
}

fn names(n: &[&str]) -> Elements {
    Elements::Ifnames(n.iter().map(|s| s.to_string()).collect())
}

fn add(set: &str, elements: Elements) -> ElementChange {
    ElementChange {
        op: ElementOp::Add,
        set: set.into(),
        elements,
    }
}

fn del(set: &str, elements: Elements) -> ElementChange {
    ElementChange {
        op: ElementOp::Delete,
        set: set.into(),
        elements,
    }
}

/// The set types of the capture table (see capture.sh).
fn set_type(name: &str) -> SetType {
    match name {
        "s4_x" | "s4_all" | "s4_top" => SetType::Set(SetKind::Ipv4),
        "s6_x" => SetType::Set(SetKind::Ipv6),
        "h4_x" => SetType::Set(SetKind::Ipv4Hosts),
        "h6_x" => SetType::Set(SetKind::Ipv6Hosts),
        "n4_x" => SetType::Set(SetKind::Ipv4Port),
        "n6_x" => SetType::Set(SetKind::Ipv6Port),
        "wl_known" => SetType::Set(SetKind::Ifname),
        "wl_from" => SetType::VerdictMap,
        other => panic!("no set {other} in the capture table"),
    }
}

/// See the module comment: relative seqs, zero port ids, no `NFTA_SET_ELEM_LIST_SET_ID`.
fn normalise(raw: &[u8]) -> Vec<u8> {
    let msgs = messages(raw).expect("capture parses");
    let first = msgs[0].seq;
    let mut w = Writer::default();
    for m in msgs {
        let start = w.buf.len();
        w.buf.extend_from_slice(&0u32.to_ne_bytes());
        w.buf.extend_from_slice(&m.ty.to_ne_bytes());
        w.buf.extend_from_slice(&m.flags.to_ne_bytes());
        w.buf
            .extend_from_slice(&m.seq.wrapping_sub(first).to_ne_bytes());
        w.buf.extend_from_slice(&0u32.to_ne_bytes());
        let setelem = m.ty >> 8 == NFNL_SUBSYS_NFTABLES;
        if setelem {
            w.buf.extend_from_slice(&m.payload[..NFGENMSG_LEN]);
            for a in attrs(&m.payload[NFGENMSG_LEN..], 0).expect("attributes parse") {
                if a.ty != NFTA_SET_ELEM_LIST_SET_ID {
                    let len = NLA_HDRLEN + a.value.len();
                    let from = NFGENMSG_LEN + a.offset;
                    w.buf.extend_from_slice(&m.payload[from..from + len]);
                    w.buf.resize(super::attr::align(w.buf.len()), 0);
                }
            }
        } else {
            w.buf.extend_from_slice(m.payload);
        }
        w.end_msg(start);
    }
    w.buf
}

/// Hex lines of 16 bytes with offsets, so a failed comparison shows where.
fn hex(b: &[u8]) -> Vec<String> {
    b.chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let bytes: Vec<String> = c.iter().map(|x| format!("{x:02x}")).collect();
            format!("{:04x}: {}", i * 16, bytes.join(" "))
        })
        .collect()
}

/// Both directions: `encode(changes) == normalise(raw)` and `decode(raw) == changes`.
fn golden(raw: &[u8], changes: &[ElementChange]) {
    let batch = encode_batch(changes, EncodeOptions { seq: 0, ack: false }).expect("encodes");
    assert_eq!(
        hex(&batch.bytes),
        hex(&normalise(raw)),
        "encode(expected) == raw"
    );
    assert_eq!(decoded_changes(raw), changes, "decode(raw) == expected");
}

fn decoded_changes(raw: &[u8]) -> Vec<ElementChange> {
    let decoded = decode_batch(raw).expect("decodes");
    assert!(matches!(
        decoded.first().map(|d| &d.body),
        Some(Body::BatchBegin {
            res_id: NFNL_SUBSYS_NFTABLES
        })
    ));
    assert!(matches!(
        decoded.last().map(|d| &d.body),
        Some(Body::BatchEnd {
            res_id: NFNL_SUBSYS_NFTABLES
        })
    ));
    decoded
        .iter()
        .filter_map(|d| match &d.body {
            Body::SetElems(m) => {
                assert_eq!((m.family, m.table.as_str()), (NFPROTO_INET, TABLE_NAME));
                Some(to_change(m, set_type(&m.set)).expect("reads back"))
            }
            _ => None,
        })
        .collect()
}

// One test per capture, named after the fixture ----------------------------------------

#[test]
fn s4_add_to_empty_sends_nfts_zero_key_interval_end_first() {
    golden(
        S4_ADD_TO_EMPTY,
        &[add("s4_x", prefixes(&["10.65.0.1/32"], true))],
    );
}

#[test]
fn s4_add_two() {
    golden(
        S4_ADD_TWO,
        &[add(
            "s4_x",
            prefixes(&["10.65.1.0/24", "10.66.0.0/16"], false),
        )],
    );
}

#[test]
fn s4_delete() {
    golden(
        S4_DELETE,
        &[del("s4_x", prefixes(&["10.65.1.0/24"], false))],
    );
}

#[test]
fn s4_add_adjacent() {
    golden(
        S4_ADD_ADJACENT,
        &[add("s4_x", prefixes(&["10.65.0.2/32"], false))],
    );
}

#[test]
fn s4_add_all_needs_no_zero_key_end_and_no_end_element() {
    golden(
        S4_ADD_ALL,
        &[add("s4_all", prefixes(&["0.0.0.0/0"], false))],
    );
    // The set was empty, but the prefix starts at the zero key: nft adds nothing.
    let was_empty = encode_batch(
        &[add("s4_all", prefixes(&["0.0.0.0/0"], true))],
        EncodeOptions { seq: 0, ack: false },
    )
    .expect("encodes");
    assert_eq!(hex(&was_empty.bytes), hex(&normalise(S4_ADD_ALL)));
}

#[test]
fn s4_add_top_is_an_open_interval() {
    golden(
        S4_ADD_TOP,
        &[add("s4_top", prefixes(&["255.255.255.0/24"], true))],
    );
}

#[test]
fn s4_delete_last() {
    golden(
        S4_DELETE_LAST,
        &[del("s4_top", prefixes(&["255.255.255.0/24"], false))],
    );
}

#[test]
fn s6_add_to_empty() {
    golden(
        S6_ADD_TO_EMPTY,
        &[add(
            "s6_x",
            prefixes(&["fd00:10::1/128", "fd00:20::/64"], true),
        )],
    );
}

#[test]
fn s6_delete() {
    golden(
        S6_DELETE,
        &[del("s6_x", prefixes(&["fd00:20::/64"], false))],
    );
}

#[test]
fn h4_add_sends_bare_keys_without_interval_ends() {
    golden(
        H4_ADD,
        &[add("h4_x", addresses(&["10.65.0.1", "10.65.0.2"]))],
    );
}

#[test]
fn h4_delete() {
    golden(H4_DELETE, &[del("h4_x", addresses(&["10.65.0.1"]))]);
}

#[test]
fn h6_add() {
    golden(H6_ADD, &[add("h6_x", addresses(&["fd00:10::1"]))]);
}

#[test]
fn n4_add_pads_each_field_to_a_register() {
    golden(
        N4_ADD,
        &[add(
            "n4_x",
            tuples(&[("10.65.0.1", 6, 8080), ("10.65.0.2", 17, 53)]),
        )],
    );
}

#[test]
fn n4_delete() {
    golden(N4_DELETE, &[del("n4_x", tuples(&[("10.65.0.2", 17, 53)]))]);
}

#[test]
fn n6_add() {
    golden(N6_ADD, &[add("n6_x", tuples(&[("fd00:10::1", 6, 80)]))]);
}

#[test]
fn ifname_add_pads_names_to_ifnamsiz() {
    golden(IFNAME_ADD, &[add("wl_known", names(&["cali1", "cali2"]))]);
}

#[test]
fn ifname_delete() {
    golden(IFNAME_DELETE, &[del("wl_known", names(&["cali2"]))]);
}

#[test]
fn vmap_add_carries_a_jump_verdict() {
    golden(
        VMAP_ADD,
        &[add(
            "wl_from",
            Elements::Verdicts(vec![("cali1".into(), Verdict::Jump("w.cali1.out".into()))]),
        )],
    );
}

#[test]
fn vmap_delete_names_the_key_only() {
    golden(VMAP_DELETE, &[del("wl_from", names(&["cali1"]))]);
}

#[test]
fn mixed_transaction_is_one_batch_of_four_messages() {
    golden(
        MIXED,
        &[
            del("s4_x", prefixes(&["10.65.0.1/32"], false)),
            add("s4_x", prefixes(&["10.65.2.0/24"], false)),
            add("s6_x", prefixes(&["fd00:30::/64"], false)),
            add("wl_known", names(&["cali3"])),
        ],
    );
}

#[test]
fn nft_sends_set_ids_on_additions_only() {
    for d in decode_batch(MIXED).expect("decodes") {
        if let Body::SetElems(m) = d.body {
            assert_eq!(m.set_id.is_some(), m.op == ElementOp::Add, "{}", m.set);
        }
    }
}

#[test]
fn create_existing_is_refused_with_eexist_pointing_at_the_element() {
    let decoded = decode_batch(CREATE_EXISTING).expect("decodes");
    assert_eq!(
        decoded[1].flags,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
        "create element = NLM_F_EXCL"
    );
    let acks = decode_acks(CREATE_EXISTING_ERROR).expect("decodes");
    assert_eq!(
        acks,
        vec![Ack {
            seq: decoded[1].seq,
            errno: 17, // EEXIST
            message: None,
            offset: Some(64),
        }]
    );
    // Offset 64 of nft's message is the first element nest: 16 nlmsghdr + 4 nfgenmsg
    // + 16 table + 16 set name + 8 set id + 4 elements list header.
    let raw_msg = messages(CREATE_EXISTING).expect("parses")[1];
    let body = &CREATE_EXISTING[raw_msg.offset + 64..];
    assert_eq!(body[2..4], (NLA_F_NESTED | 1).to_ne_bytes());
}

// Encoder behaviour beyond the captures -----------------------------------------------

#[test]
fn ack_flag_changes_only_the_element_messages_flags() {
    let changes = [
        del("s4_x", prefixes(&["10.65.0.1/32"], false)),
        add("wl_known", names(&["cali3"])),
    ];
    let plain = encode_batch(&changes, EncodeOptions { seq: 7, ack: false }).expect("encodes");
    let acked = encode_batch(&changes, EncodeOptions { seq: 7, ack: true }).expect("encodes");
    let (p, a) = (
        messages(&plain.bytes).expect("parses"),
        messages(&acked.bytes).expect("parses"),
    );
    assert_eq!(p.len(), 4);
    for (i, (p, a)) in p.iter().zip(&a).enumerate() {
        let element_msg = i == 1 || i == 2;
        let want = if element_msg {
            p.flags | NLM_F_ACK
        } else {
            p.flags
        };
        assert_eq!(a.flags, want, "message {i}");
        assert_eq!((a.seq, a.payload), (p.seq, p.payload));
    }
    assert_eq!(
        plain.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [8, 9]
    );
    assert_eq!((plain.begin_seq, plain.end_seq), (7, 10));
}

#[test]
fn long_element_lists_are_split_into_messages_of_one_batch() {
    let many: Vec<String> = (0..3000).map(|i| format!("cali{i:06}")).collect();
    let prefixes_many: Vec<ipnet::IpNet> = (0..3000u32)
        .map(|i| {
            ipnet::IpNet::new(IpAddr::from((0x0a00_0000 + i * 4).to_be_bytes()), 30).expect("net")
        })
        .collect();
    let changes = [
        add("wl_known", Elements::Ifnames(many.clone())),
        add(
            "s4_x",
            Elements::Prefixes {
                prefixes: prefixes_many.clone(),
                set_was_empty: true,
            },
        ),
    ];
    let batch = encode_batch(&changes, EncodeOptions { seq: 0, ack: true }).expect("encodes");
    assert!(
        batch.messages.len() > 2,
        "{} messages",
        batch.messages.len()
    );
    let decoded = decode_batch(&batch.bytes).expect("decodes");
    let mut names_back = Vec::new();
    let mut prefixes_back = Vec::new();
    for d in &decoded {
        if let Body::SetElems(m) = &d.body {
            match to_change(m, set_type(&m.set)).expect("reads back").elements {
                Elements::Ifnames(n) => names_back.extend(n),
                Elements::Prefixes { prefixes, .. } => prefixes_back.extend(prefixes),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(names_back, many);
    assert_eq!(prefixes_back, prefixes_many, "interval pairs never split");
    for m in messages(&batch.bytes).expect("parses") {
        assert!(m.payload.len() <= MAX_ELEMENTS_BYTES + 64);
    }
}

#[test]
fn interval_elements_are_sent_in_address_order() {
    let batch = encode_batch(
        &[add(
            "s4_x",
            prefixes(&["10.66.0.0/16", "10.65.1.0/24"], false),
        )],
        EncodeOptions { seq: 0, ack: false },
    )
    .expect("encodes");
    assert_eq!(hex(&batch.bytes), hex(&normalise(S4_ADD_TWO)));
    // The element indexes still point at the caller's order.
    let sources: Vec<Option<usize>> = batch.messages[0].nests.iter().map(|n| n.1).collect();
    assert_eq!(sources, [Some(1), Some(1), Some(0), Some(0)]);
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let mixed = add("s4_x", prefixes(&["10.0.0.0/8", "fd00::/8"], false));
    assert!(encode_batch(&[mixed], EncodeOptions { seq: 0, ack: true }).is_err());
    let long = add("wl_known", names(&["a-name-of-16-chr"]));
    assert!(encode_batch(&[long], EncodeOptions { seq: 0, ack: true }).is_err());
    let verdict_delete = del(
        "wl_from",
        Elements::Verdicts(vec![("cali1".into(), Verdict::Accept)]),
    );
    assert!(encode_batch(&[verdict_delete], EncodeOptions { seq: 0, ack: true }).is_err());
}

#[test]
fn empty_changes_send_only_begin_and_end() {
    let batch = encode_batch(
        &[add("s4_x", prefixes(&[], true))],
        EncodeOptions { seq: 0, ack: true },
    )
    .expect("encodes");
    assert!(batch.messages.is_empty());
    assert_eq!(batch.bytes.len(), 40);
}

#[test]
fn keys_of_the_wrong_width_are_refused_when_decoding() {
    let msg = |key: Vec<u8>| SetElemMsg {
        op: ElementOp::Add,
        family: NFPROTO_INET,
        table: TABLE_NAME.into(),
        set: "h4_x".into(),
        set_id: None,
        elements: vec![RawElement {
            key,
            ..RawElement::default()
        }],
    };
    let hosts = SetType::Set(SetKind::Ipv4Hosts);
    let ok = to_change(&msg(vec![10, 65, 0, 1]), hosts).expect("an IPv4 address");
    assert_eq!(ok.elements, addresses(&["10.65.0.1"]));
    for bad in [vec![10, 65, 0], vec![10, 65, 0, 1, 0], vec![0; 16]] {
        let err = to_change(&msg(bad.clone()), hosts).expect_err("wrong width");
        assert!(
            err.to_string().contains("element 0: key of"),
            "{bad:?}: {err}"
        );
    }
    let ports = SetType::Set(SetKind::Ipv6Port);
    assert!(to_change(&msg(vec![0; 16]), ports).is_err());
    assert!(to_change(&msg(vec![0; 24]), ports).is_ok());
}
