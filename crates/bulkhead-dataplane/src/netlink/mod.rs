//! Set-element changes sent to the kernel as nf_tables netlink batches, without `nft`.
//!
//! Structure (chains, maps, rules) goes through `nft -f -`. The frequent change, set
//! and map elements added or removed when endpoints come, go or change labels, goes here:
//! one `NETLINK_NETFILTER` batch, `NFNL_MSG_BATCH_BEGIN`, one `NFT_MSG_NEWSETELEM` or
//! `NFT_MSG_DELSETELEM` per set touched, `NFNL_MSG_BATCH_END`. The kernel commits the
//! batch as one transaction, all or nothing, exactly like an `nft -f` script.
//!
//! The pieces:
//! * [`consts`]: kernel constants with their C names.
//! * [`element_changes`]: two [`Table`](crate::Table)s → typed [`ElementChange`]s, or
//!   [`Unsupported`] when anything but elements differs.
//! * [`encode_batch`] / [`decode_batch`] / [`to_change`]: the wire format, byte for byte
//!   what `nft` 1.0.6 sends for the same command (tested against captures of `nft`
//!   itself, `fixtures.rs`, made by `capture.sh`), and back.
//! * [`NfSocket`]: a socket in a given network namespace that sends one batch with
//!   `NLM_F_ACK` on every message and names the message and element the kernel refused.
//!
//! * [`NfSocket::generation`]: the namespace's ruleset generation, which every committed
//!   transaction changes (how the agent notices tampering without listing its table).
//!
//! What it does not do: create or delete sets, maps, chains or rules; read the table
//! back; speak any other nfnetlink subsystem. No GPL code is linked (no libnftnl, no
//! rustables): the format is written by hand from the kernel headers and the captures.
//! The wire format and the capture procedure are described in docs/netlink.md.

mod attr;
pub mod consts;
mod element;
mod generation;
mod message;
mod socket;

pub use attr::DecodeError;
pub use element::{
    AddrProtoPort, ElementChange, ElementOp, Elements, SetType, Unsupported, Verdict,
    element_changes, parse_elements,
};
pub use generation::{GenReply, decode_generation, encode_getgen};
pub use message::{
    Ack, Batch, Body, Decoded, ElementData, EncodeError, EncodeOptions, MAX_ELEMENTS_BYTES,
    MessageInfo, RawElement, SetElemMsg, TABLE_NAME, decode_acks, decode_batch, encode_batch,
    to_change,
};
pub use socket::{NetnsId, NfSocket, SendError};

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
