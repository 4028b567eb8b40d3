//! Network-namespace topologies for real packets.
//!
//! This crate builds small, throw-away Linux networks out of network namespaces and veth
//! pairs, puts echo servers in them, sends real TCP, UDP and ICMP probes across them, and
//! loads nftables scripts into them. It is the groundwork for the dataplane conformance
//! runner, the agent's workload management and the demo.
//!
//! The pieces, from the bottom up:
//!
//! * [`Netns`]: one named namespace (`ip netns add`), `lo` up, IPv6 DAD off, deleted on
//!   drop together with every process and server it started. Commands run inside it
//!   through `ip netns exec` ([`Netns::exec`], [`Netns::spawn`], [`Netns::sysctl`]); Rust
//!   code runs inside it on a dedicated OS thread that called `setns`
//!   ([`Netns::run_in`], [`Netns::spawn_thread`]), because a network namespace belongs to a
//!   thread, not to a process.
//! * [`veth_pair`]: a veth pair between two namespaces with addresses and routes.
//! * [`NodeSandbox`]: the Calico node pattern. A node namespace routes (forwarding on) and
//!   every workload, host or external namespace hangs off it on its own veth: the
//!   endpoint side is `eth0` with a /32 (and /128) address and a default route through the
//!   node, the node side is `cali<hash>` (or `hst…`/`ext…`) with a host route back. Any two
//!   endpoints talk through the node's FORWARD path, where nftables filters.
//! * [`Service`] servers ([`Netns::serve`]): TCP accept-and-echo and UDP echo on given
//!   ports, served by one poll loop per call, stopped reliably.
//! * Probes ([`tcp_connect`], [`udp_request`], [`icmp_echo`], and [`run_batch`] for many in
//!   parallel with bounded parallelism and an overall deadline).
//! * [`nft`]: `nft -f -` as one atomic transaction inside a namespace, `nft -c`, and
//!   reading one table back as JSON.
//!
//! What it does not do: it does not render policy (that is the dataplane crate), it does
//! not parse nft output (JSON comes back as text), it does not touch the root namespace
//! (no interface, address, route, sysctl or ruleset outside namespaces it created, and no
//! veth ever has an end in the root namespace), and it does not probe SCTP when the kernel
//! lacks it ([`sctp_supported`] tells). It does not sweep namespaces left behind by a
//! process that was killed with SIGKILL: names carry the creating process id
//! ([`unique_name`]), so such leftovers are easy to find by hand.
//!
//! Everything here needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip` from iproute2;
//! [`preflight`] checks both. Tests that cannot run should say so and return.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cmd;
mod conntrack;
mod error;
mod netns;
pub mod nft;
pub mod persistent;
mod probe;
mod server;
mod topology;

pub use error::{Error, Result};
pub use netns::{
    Netns, NsThread, kernel_tests_can_run, nft_preflight, preflight, process_prefix, unique_name,
};
pub use probe::{
    BatchOptions, MAX_PROBE_TIMEOUT, Outcome, Probe, Protocol, icmp_echo, probe, run_batch,
    run_batch_outcomes, sctp_supported, tcp_connect, udp_request,
};
pub use server::Service;
pub use topology::{
    Cidr, ENDPOINT_IFNAME, Endpoint, EndpointKind, GATEWAY_MAC, GATEWAY_V4, GATEWAY_V6,
    LINK_PREFIX, NodeSandbox, Route, VethEnd, host_ifname, link_ifname, veth_pair,
};
