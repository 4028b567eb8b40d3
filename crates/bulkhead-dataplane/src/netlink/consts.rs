//! Kernel ABI constants, with their C names, as in the kernel's uapi headers
//! (`linux/netlink.h`, `linux/netfilter.h`, `linux/netfilter/nfnetlink.h`,
//! `linux/netfilter/nf_tables.h`; checked against linux-libc-dev 6.1 on Debian 12).
//! Only what set-element batches need; unused slots of an enum are comments, so the
//! numbering stays visible.
#![allow(missing_docs)]

// linux/netlink.h ------------------------------------------------------------------------

pub const NETLINK_NETFILTER: i32 = 12;

pub const NLM_F_REQUEST: u16 = 0x01;
// pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_ACK: u16 = 0x04;
// Modifiers to NEW requests.
// pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
// Flags for ACK messages.
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;

// pub const NLMSG_NOOP: u16 = 0x1;
pub const NLMSG_ERROR: u16 = 0x2;
pub const NLMSG_DONE: u16 = 0x3;
pub const NLMSG_OVERRUN: u16 = 0x4;
pub const NLMSG_MIN_TYPE: u16 = 0x10;

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ALIGNTO: usize = 4;
pub const NLA_ALIGNTO: usize = 4;
pub const NLA_HDRLEN: usize = 4;
pub const NLA_F_NESTED: u16 = 1 << 15;
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

// enum nlmsgerr_attrs
// pub const NLMSGERR_ATTR_UNUSED: u16 = 0;
pub const NLMSGERR_ATTR_MSG: u16 = 1;
pub const NLMSGERR_ATTR_OFFS: u16 = 2;

// Socket options at SOL_NETLINK.
pub const SOL_NETLINK: i32 = 270;
pub const NETLINK_CAP_ACK: i32 = 10;
pub const NETLINK_EXT_ACK: i32 = 11;

// linux/netfilter.h ----------------------------------------------------------------------

pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;

pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;

// linux/netfilter/nfnetlink.h ------------------------------------------------------------

/// `struct nfgenmsg`: nfgen_family u8, version u8, res_id __be16.
pub const NFGENMSG_LEN: usize = 4;
pub const NFNETLINK_V0: u8 = 0;
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = NLMSG_MIN_TYPE;
pub const NFNL_MSG_BATCH_END: u16 = NLMSG_MIN_TYPE + 1;

// linux/netfilter/nf_tables.h ------------------------------------------------------------

// enum nft_verdicts
// pub const NFT_CONTINUE: i32 = -1;
// pub const NFT_BREAK: i32 = -2;
pub const NFT_JUMP: i32 = -3;
pub const NFT_GOTO: i32 = -4;
// pub const NFT_RETURN: i32 = -5;

// enum nf_tables_msg_types
// NFT_MSG_NEWTABLE = 0 … NFT_MSG_DELSET = 11
pub const NFT_MSG_NEWSETELEM: u16 = 12;
// pub const NFT_MSG_GETSETELEM: u16 = 13;
pub const NFT_MSG_DELSETELEM: u16 = 14;

// enum nft_list_attributes
pub const NFTA_LIST_ELEM: u16 = 1;

// enum nft_set_elem_flags
pub const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
// pub const NFT_SET_ELEM_CATCHALL: u32 = 0x2;

// enum nft_set_elem_attributes
// pub const NFTA_SET_ELEM_UNSPEC: u16 = 0;
pub const NFTA_SET_ELEM_KEY: u16 = 1;
pub const NFTA_SET_ELEM_DATA: u16 = 2;
pub const NFTA_SET_ELEM_FLAGS: u16 = 3;
// pub const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
// pub const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
pub const NFTA_SET_ELEM_USERDATA: u16 = 6;
// pub const NFTA_SET_ELEM_EXPR: u16 = 7;
// pub const NFTA_SET_ELEM_PAD: u16 = 8;
// pub const NFTA_SET_ELEM_OBJREF: u16 = 9;
pub const NFTA_SET_ELEM_KEY_END: u16 = 10;
// pub const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;

// enum nft_set_elem_list_attributes
// pub const NFTA_SET_ELEM_LIST_UNSPEC: u16 = 0;
pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;

// enum nft_data_attributes
pub const NFTA_DATA_VALUE: u16 = 1;
pub const NFTA_DATA_VERDICT: u16 = 2;

// enum nft_verdict_attributes
pub const NFTA_VERDICT_CODE: u16 = 1;
pub const NFTA_VERDICT_CHAIN: u16 = 2;
// pub const NFTA_VERDICT_CHAIN_ID: u16 = 3;

/// `NFT_REG32_SIZE`: concatenated keys put each field in 4-byte registers.
pub const NFT_REG32_SIZE: usize = 4;
/// `IFNAMSIZ` (linux/if.h): the `ifname` key is 16 bytes, zero padded.
pub const IFNAMSIZ: usize = 16;
/// `NFT_NAME_MAXLEN` (nf_tables.h): table, set and chain names, with the NUL.
pub const NFT_NAME_MAXLEN: usize = 256;

// libnftnl's element user data (include/libnftnl/udata.h), a TLV list the kernel stores
// and returns untouched; `nft` reads it back to print an interval that runs to the end of
// the address space as a prefix. Bytes: type u8, length u8, value (host byte order u32).
// enum nftnl_udata_set_elem_types
// pub const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;
pub const NFTNL_UDATA_SET_ELEM_FLAGS: u8 = 1;
// enum nftnl_udata_set_elem_flags
pub const NFTNL_SET_ELEM_F_INTERVAL_OPEN: u32 = 0x1;
