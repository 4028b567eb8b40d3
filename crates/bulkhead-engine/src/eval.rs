//! `evaluate(flow)`: the tier walk, per side and per mode (reference §3.1).
//!
//! For one endpoint and direction: every applicable tier in order; in a tier, every
//! policy in order and every rule in order; Log continues, Allow and Deny end everything,
//! Pass leaves the tier. A tier in which nothing decided applies its default action (Deny
//! unless the tier says Pass). If every tier passed, or none applied, the endpoint's
//! profiles decide; nothing matching there denies. Host endpoints first let their failsafe
//! ports through, then run untracked and pre-DNAT policies (whose tiers end in Pass). An
//! untracked packet's reply is not tracked either: the connection needs the reply allowed
//! too (see [`Flow::reply`] for what the model knows of it). A flow that a host forwards
//! through its host endpoints ([`Via`]) also meets their untracked and pre-DNAT (coming
//! in) and `applyOnForward` tiers, before and after the two ends; a reply that the node's
//! conntrack does not take as established is judged as a packet of its own.
//!
//! There is one walk. It reports what it does to a `Sink`: `evaluate` records the tiers
//! and hits of the trace, while verdict-only callers ([`Cluster::verdict`], the
//! connectivity matrix) pass a sink that records nothing, so they never build a hit or
//! clone a name, and cannot disagree with `evaluate`.

use std::net::IpAddr;

use bulkhead_api::Kind;
use bulkhead_api::values::{Action, Protocol, TierDefaultAction};

use crate::compile::{Address, PolicyClass, Rule};
use crate::decision::{
    Decision, Direction, EndpointKind, Hit, HitAction, Name, Outcome, PolicyRef, RuleRef,
    SideOutcome, Verdict,
};
use crate::endpoint::Endpoint;
use crate::flow::Flow;
use crate::host_defaults::HostDefaults;
use crate::model::{Cluster, Mode, Tier, TierSlice};

/// Which way a flow goes between a workload and its own host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnHost {
    /// From the workload to an address of its node.
    FromWorkload,
    /// From an address of the node to its workload.
    ToWorkload,
}

/// The endpoints whose policy a flow meets ([`Cluster::policed_ends`]).
#[derive(Debug, Default)]
struct PolicedEnds<'c> {
    /// The source's egress side.
    from: Option<usize>,
    /// The destination's ingress side.
    to: Option<usize>,
    /// The node whose `DefaultEndpointToHostAction` drops the flow after the source's
    /// egress: a workload's own node, for a flow to it, when the node does not admit
    /// such traffic ([`crate::host_defaults::EndpointToHost`]).
    dropped_by: Option<&'c Name>,
}

/// Where the walk reports what it did, in order.
pub(crate) trait Sink {
    /// A tier applies to the endpoint and is entered.
    fn tier(&mut self, tier: &Tier);
    /// Something decided or logged; `hit` describes it, and is called only by sinks that
    /// record hits.
    fn hit(&mut self, hit: impl FnOnce() -> Hit);
}

/// Records nothing: the verdict-only walk.
impl Sink for () {
    fn tier(&mut self, _: &Tier) {}
    fn hit(&mut self, _: impl FnOnce() -> Hit) {}
}

/// Records the tiers and the trace of one side.
struct Traced {
    tiers: Vec<Name>,
    trace: Vec<Hit>,
}

impl Sink for Traced {
    fn tier(&mut self, tier: &Tier) {
        self.tiers.push(tier.name.clone());
    }
    fn hit(&mut self, hit: impl FnOnce() -> Hit) {
        self.trace.push(hit());
    }
}

/// The host endpoints that a forwarded flow crosses on the node forwarding it: it came in
/// through `inbound` and/or leaves through `outbound` (made by [`Cluster::via`]). Their
/// `applyOnForward` policies (and the inbound one's untracked and pre-DNAT policies) then
/// apply too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Via {
    inbound: Option<usize>,
    outbound: Option<usize>,
}

impl Via {
    /// The path of the reply: in by the request's outbound endpoint, out by its inbound.
    fn reversed(self) -> Via {
        Via {
            inbound: self.outbound,
            outbound: self.inbound,
        }
    }
}

impl Cluster {
    /// The settings around the policies of the node endpoint `ep` is on.
    fn node_defaults(&self, ep: usize) -> &HostDefaults {
        self.host_defaults(self.endpoints[ep].node.as_deref())
    }

    /// Whether the failsafe rules of the raw table let `flow` by host endpoint `ep`, which
    /// it comes in by, before any untracked policy
    /// ([`crate::failsafe::Failsafe::raw_allows`]). The packet then goes on to the
    /// tracked policies.
    fn raw_failsafe(&self, ep: usize, flow: &Flow) -> bool {
        self.node_defaults(ep).failsafe.raw_allows(
            flow.protocol,
            flow.dst_port,
            flow.src_port,
            flow.src,
        )
    }

    /// The [`Via`] of a flow forwarded in through the HostEndpoint named `inbound` and out
    /// through the one named `outbound` (either may be absent); an error names a
    /// HostEndpoint that does not exist.
    pub fn via(&self, inbound: Option<&str>, outbound: Option<&str>) -> Result<Via, String> {
        let find = |name: Option<&str>| {
            name.map(|n| {
                self.endpoint_index(EndpointKind::Host, None, n)
                    .ok_or_else(|| format!("no HostEndpoint is named {n:?}"))
            })
            .transpose()
        };
        Ok(Via {
            inbound: find(inbound)?,
            outbound: find(outbound)?,
        })
    }

    /// Evaluates a flow: the enforced verdict and the pending one (staged policies as if
    /// enforced), each with both sides' verdicts and traces.
    pub fn evaluate(&self, flow: &Flow) -> Decision {
        self.evaluate_via(flow, Via::default())
    }

    /// [`Cluster::evaluate`] for a flow that a host forwards through the host endpoints of
    /// `via`: their sides come first (inbound) and last (outbound).
    pub fn evaluate_via(&self, flow: &Flow, via: Via) -> Decision {
        let (src, dst) = self.ends(flow);
        let enforced = self.outcome(Mode::Enforced, flow, &src, &dst, via);
        let pending = self
            .has_staged
            .then(|| self.outcome(Mode::Pending, flow, &src, &dst, via));
        Decision::new(enforced, pending)
    }

    /// The verdict of a flow in one mode, without the trace: the same walk as
    /// [`Cluster::evaluate`] (so always `evaluate(flow)`'s `enforced.verdict` or
    /// `pending.verdict`), minus the cost of recording it. The source's egress is
    /// evaluated first; if it denies, the destination's ingress is not evaluated.
    pub fn verdict(&self, mode: Mode, flow: &Flow) -> Verdict {
        let (src, dst) = self.ends(flow);
        self.verdict_between(mode, flow, &src, &dst)
    }

    /// [`Cluster::verdict`] with both addresses already resolved (the connectivity matrix
    /// resolves each endpoint's once).
    pub(crate) fn verdict_between(
        &self,
        mode: Mode,
        flow: &Flow,
        src: &Address<'_>,
        dst: &Address<'_>,
    ) -> Verdict {
        let packet = Packet { flow, src, dst };
        let deny = |ep: Option<usize>, ingress| {
            ep.is_some_and(|ep| self.side(mode, ep, ingress, packet, &mut ()) == Verdict::Deny)
        };
        let ends = self.policed_ends(src, dst);
        if deny(ends.from, false) || ends.dropped_by.is_some() || deny(ends.to, true) {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }

    /// The endpoints and network sets at `ip` (endpoints in `endpoint_at` order, so the
    /// first one is the endpoint whose policy applies).
    pub(crate) fn address(&self, ip: IpAddr, port: Option<u16>) -> Address<'_> {
        Address {
            ip,
            port,
            endpoints: self.endpoints_at(ip),
            sets: self.net_index.sets_containing(ip),
            cluster: self,
        }
    }

    /// The endpoints whose policy a flow between `src` and `dst` meets: the source's
    /// (egress) and the destination's (ingress), except between a host and its own
    /// workloads ([`Cluster::own_host_flow`]): a workload's traffic to its host meets the
    /// workload's egress only (and then the node's `DefaultEndpointToHostAction`:
    /// [`PolicedEnds::dropped_by`]), and a host's traffic to its workloads is not
    /// policed.
    fn policed_ends<'c>(&'c self, src: &Address<'_>, dst: &Address<'_>) -> PolicedEnds<'c> {
        let from = src.endpoints.first().copied();
        match self.own_host_flow(src, dst) {
            Some((OwnHost::FromWorkload, node)) => PolicedEnds {
                from,
                to: None,
                dropped_by: (!self.host_defaults(Some(node)).endpoint_to_host.admits())
                    .then_some(node),
            },
            Some((OwnHost::ToWorkload, _)) => PolicedEnds::default(),
            None => PolicedEnds {
                from,
                to: dst.endpoints.first().copied(),
                dropped_by: None,
            },
        }
    }

    /// Whether `flow` goes between a host and one of its own workloads, either way.
    pub(crate) fn between_host_and_own_workload(&self, flow: &Flow) -> bool {
        let (src, dst) = self.ends(flow);
        self.own_host_flow(&src, &dst).is_some()
    }

    /// Which way a flow goes between a workload and an address of its own node (one of
    /// the node's host endpoints, or one its `Node` resource lists: [`Cluster::node_at`]),
    /// with the node; `None` for every other flow.
    fn own_host_flow<'c>(
        &'c self,
        src: &Address<'_>,
        dst: &Address<'_>,
    ) -> Option<(OwnHost, &'c Name)> {
        let end = |a: &Address<'_>| a.endpoints.first().map(|&i| &self.endpoints[i]);
        let (s, d) = (end(src), end(dst));
        // The common case, workload to workload (or host to host), decided on the kinds.
        if let (Some(s), Some(d)) = (s, d)
            && s.kind == d.kind
        {
            return None;
        }
        let workload_node = |e: Option<&'c Endpoint>| {
            e.filter(|e| e.kind == EndpointKind::Workload)
                .and_then(|e| e.node.as_ref())
        };
        if let Some(node) = workload_node(s)
            && self.node_owning(dst.endpoints, dst.ip) == Some(node)
        {
            return Some((OwnHost::FromWorkload, node));
        }
        if let Some(node) = workload_node(d)
            && self.node_owning(src.endpoints, src.ip) == Some(node)
        {
            return Some((OwnHost::ToWorkload, node));
        }
        None
    }

    fn outcome(
        &self,
        mode: Mode,
        flow: &Flow,
        src: &Address<'_>,
        dst: &Address<'_>,
        via: Via,
    ) -> Outcome {
        let packet = Packet { flow, src, dst };
        let side = |ep: usize, direction, forwarded| {
            self.traced_side(mode, ep, direction, forwarded, packet)
        };
        let ends = self.policed_ends(src, dst);
        let mut outcome = Outcome {
            verdict: Verdict::Allow,
            forwarded_in: via.inbound.map(|ep| side(ep, Direction::Ingress, true)),
            egress: ends.from.map(|ep| side(ep, Direction::Egress, false)),
            ingress: ends.to.map(|ep| side(ep, Direction::Ingress, false)),
            forwarded_out: via.outbound.map(|ep| side(ep, Direction::Egress, true)),
        };
        // The node's action comes after the workload's egress allowed the flow, in the
        // same path (Felix's `cali-wl-to-host`), so it ends the egress side.
        if let Some(node) = ends.dropped_by
            && let Some(egress) = outcome
                .egress
                .as_mut()
                .filter(|s| s.verdict == Verdict::Allow)
        {
            egress.verdict = Verdict::Deny;
            egress.trace.push(Hit {
                tier: None,
                policy: PolicyRef {
                    kind: Kind::Node,
                    namespace: None,
                    name: node.clone(),
                },
                action: HitAction::Deny,
                rule: RuleRef::EndpointToHost,
            });
        }
        if outcome.sides().any(|s| s.verdict == Verdict::Deny) {
            outcome.verdict = Verdict::Deny;
        } else if via != Via::default() {
            self.forwarded_reply(mode, packet, via, &mut outcome);
        }
        outcome
    }

    /// The reply of a forwarded flow that the node's conntrack does not take as
    /// established: the request was untracked (an untracked Allow of the inbound host
    /// endpoint), or an untracked policy of the host endpoint the reply comes in by (the
    /// request's outbound one) decides it before conntrack sees it. Untracked egress
    /// policies never apply to forwarded packets (the raw output hook sees only the
    /// host's own). A reply that no untracked policy allows after an untracked request is
    /// invalid to conntrack (dropped) for TCP, SCTP and ICMP, and a new flow for UDP; a
    /// reply an untracked policy allows is judged afresh by every chain it crosses. The
    /// side whose untracked policy caused it gets the denial.
    fn forwarded_reply(&self, mode: Mode, request: Packet<'_>, via: Via, outcome: &mut Outcome) {
        let flow = request.flow;
        let untracked_request = via.inbound.is_some_and(|ep| {
            !self.raw_failsafe(ep, flow)
                && self.untracked(mode, ep, true, request, &mut ()) == Some(Verdict::Allow)
        });
        let (answer, reply_src, reply_dst) = self.answer(flow);
        let reply = Packet {
            flow: &answer,
            src: &reply_src,
            dst: &reply_dst,
        };
        let reply_raw = via
            .outbound
            .filter(|&ep| !self.raw_failsafe(ep, &answer))
            .and_then(|ep| self.untracked(mode, ep, true, reply, &mut ()));
        let afresh = || self.reply_afresh(mode, reply, via.reversed());
        // The verdict, and whether the outbound endpoint (or else the inbound) caused it.
        let (verdict, outbound) = match (untracked_request, reply_raw) {
            (_, Some(Verdict::Deny)) => (Verdict::Deny, true),
            (_, Some(Verdict::Allow)) => (afresh(), true),
            (true, None) if flow.protocol == Protocol::UDP => (afresh(), false),
            (true, None) => (Verdict::Deny, false),
            (false, None) => return,
        };
        if verdict == Verdict::Allow {
            return;
        }
        outcome.verdict = Verdict::Deny;
        let (ep, side) = if outbound {
            (via.outbound, outcome.forwarded_out.as_mut())
        } else {
            (via.inbound, outcome.forwarded_in.as_mut())
        };
        if let (Some(ep), Some(side)) = (ep, side) {
            side.verdict = Verdict::Deny;
            side.trace
                .push(self.host_hit(ep, HitAction::Deny, RuleRef::UntrackedReply));
        }
    }

    /// The verdict of a forwarded flow's `reply` judged as a packet of its own by the
    /// chains of the forwarding node (`via`, the reply's path): the host endpoint it
    /// comes in by ([`Cluster::forwarded`]: its untracked policies, or its pre-DNAT and
    /// `applyOnForward` ones), the workloads of that node at either end, the host
    /// endpoint it leaves by. Endpoints elsewhere track the connection as usual.
    fn reply_afresh(&self, mode: Mode, reply: Packet<'_>, via: Via) -> Verdict {
        let node = via
            .inbound
            .or(via.outbound)
            .and_then(|ep| self.endpoints[ep].node.as_ref());
        let here = |ep: Option<usize>| {
            ep.filter(|&e| {
                let e = &self.endpoints[e];
                e.kind == EndpointKind::Workload && node.is_some() && e.node.as_ref() == node
            })
        };
        let PolicedEnds { from, to, .. } = self.policed_ends(reply.src, reply.dst);
        let denies = |ep: Option<usize>, ingress: bool, forwarded: bool| {
            ep.is_some_and(|ep| {
                let v = if forwarded {
                    self.forwarded(mode, ep, ingress, reply, &mut ())
                } else {
                    self.side(mode, ep, ingress, reply, &mut ())
                };
                v == Verdict::Deny
            })
        };
        if denies(via.inbound, true, true)
            || denies(here(from), false, false)
            || denies(here(to), true, false)
            || denies(via.outbound, false, true)
        {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }

    /// One side, traced; `forwarded`: host endpoint `ep`'s side of a flow its host
    /// forwards ([`Cluster::forwarded`]).
    fn traced_side(
        &self,
        mode: Mode,
        ep: usize,
        direction: Direction,
        forwarded: bool,
        packet: Packet<'_>,
    ) -> SideOutcome {
        let ingress = direction == Direction::Ingress;
        let tiers = self
            .endpoint_policies(ep)
            .get(mode, PolicyClass::Normal, ingress)
            .len();
        // Usually enough: one hit per tier, plus the profile's.
        let mut sink = Traced {
            tiers: Vec::with_capacity(tiers),
            trace: Vec::with_capacity(tiers + 1),
        };
        let verdict = if forwarded {
            self.forwarded(mode, ep, ingress, packet, &mut sink)
        } else {
            self.side(mode, ep, ingress, packet, &mut sink)
        };
        SideOutcome {
            endpoint: self.endpoints[ep].to_ref(),
            direction,
            verdict,
            tiers: sink.tiers,
            trace: sink.trace,
        }
    }

    /// One side: endpoint `ep`, one direction.
    fn side(
        &self,
        mode: Mode,
        ep: usize,
        ingress: bool,
        packet: Packet<'_>,
        sink: &mut impl Sink,
    ) -> Verdict {
        let endpoint = &self.endpoints[ep];
        if endpoint.kind != EndpointKind::Host {
            return self.tracked(mode, ep, ingress, packet, sink);
        }
        let flow = packet.flow;
        let remote = if ingress { flow.src } else { flow.dst };
        if self
            .node_defaults(ep)
            .failsafe
            .allows(ingress, flow.protocol, flow.dst_port, remote)
        {
            sink.hit(|| self.host_hit(ep, HitAction::Allow, RuleRef::Failsafe));
            return Verdict::Allow;
        }
        let untracked = self.untracked(mode, ep, ingress, packet, sink);
        let reply = || self.reply_untracked(mode, ep, !ingress, flow);
        let verdict = match untracked {
            Some(Verdict::Deny) => return Verdict::Deny,
            // Neither packet is tracked: the reply gets through if an untracked policy
            // allows it; if none decides, conntrack meets an answer it never saw the
            // question of: invalid (dropped) for TCP, SCTP and ICMP; a new flow, which the
            // tracked policies judge, for UDP.
            Some(Verdict::Allow) => match reply() {
                Some(v) => v,
                None if flow.protocol == Protocol::UDP => {
                    let (answer, src, dst) = self.answer(flow);
                    let reply = Packet {
                        flow: &answer,
                        src: &src,
                        dst: &dst,
                    };
                    self.tracked(mode, ep, !ingress, reply, &mut ())
                }
                None => Verdict::Deny,
            },
            // Tracked: the reply is established, unless an untracked policy drops it
            // before conntrack sees it.
            None => {
                let v = self.tracked(mode, ep, ingress, packet, sink);
                if v == Verdict::Allow && reply() == Some(Verdict::Deny) {
                    Verdict::Deny
                } else {
                    return v;
                }
            }
        };
        if verdict == Verdict::Deny {
            sink.hit(|| self.host_hit(ep, HitAction::Deny, RuleRef::UntrackedReply));
        }
        verdict
    }

    /// Host endpoint `ep`'s side of a flow that its host forwards (Calico's "apply on
    /// forwarded traffic"): coming in, the untracked tiers first (unless the raw table's
    /// failsafe rules let the packet by), then the pre-DNAT tiers (both ending in Pass; an
    /// Allow there skips the rest); then the [`PolicyClass::Forward`] tiers with their
    /// default actions. With no such policy the traffic is allowed; when every tier
    /// passed, it is denied (there are no profiles). The failsafe ports do not allow
    /// forwarded traffic: they protect the host itself. What an untracked request means
    /// for its reply is [`Cluster::forwarded_reply`]'s.
    fn forwarded(
        &self,
        mode: Mode,
        ep: usize,
        ingress: bool,
        packet: Packet<'_>,
        sink: &mut impl Sink,
    ) -> Verdict {
        let lists = self.endpoint_policies(ep);
        if ingress {
            if !self.raw_failsafe(ep, packet.flow)
                && let Some(v) = self.untracked(mode, ep, true, packet, sink)
            {
                return v;
            }
            let tiers = lists.get(mode, PolicyClass::PreDnat, true);
            if let Some(v) = self.walk_tiers(tiers, true, true, packet, sink) {
                return v;
            }
        }
        let tiers = lists.get(mode, PolicyClass::Forward, ingress);
        if tiers.is_empty() {
            return Verdict::Allow;
        }
        if let Some(v) = self.walk_tiers(tiers, false, ingress, packet, sink) {
            return v;
        }
        sink.hit(|| self.host_hit(ep, HitAction::Deny, RuleRef::NoProfile));
        Verdict::Deny
    }

    /// A host endpoint's untracked tiers for one packet: `Some` if one decided.
    fn untracked(
        &self,
        mode: Mode,
        ep: usize,
        ingress: bool,
        packet: Packet<'_>,
        sink: &mut impl Sink,
    ) -> Option<Verdict> {
        let tiers = self
            .endpoint_policies(ep)
            .get(mode, PolicyClass::Untracked, ingress);
        if tiers.is_empty() {
            return None;
        }
        self.walk_tiers(tiers, true, ingress, packet, sink)
    }

    /// What host endpoint `ep`'s untracked policies make of the reply to `flow`, which
    /// crosses the endpoint in direction `ingress`.
    fn reply_untracked(
        &self,
        mode: Mode,
        ep: usize,
        ingress: bool,
        flow: &Flow,
    ) -> Option<Verdict> {
        if self
            .endpoint_policies(ep)
            .get(mode, PolicyClass::Untracked, ingress)
            .is_empty()
        {
            return None;
        }
        let (answer, src, dst) = self.answer(flow);
        let reply = Packet {
            flow: &answer,
            src: &src,
            dst: &dst,
        };
        self.untracked(mode, ep, ingress, reply, &mut ())
    }

    /// The reply to `flow` ([`Flow::reply`]) with its two addresses resolved.
    fn answer(&self, flow: &Flow) -> (Flow, Address<'_>, Address<'_>) {
        let answer = flow.reply();
        let (src, dst) = self.ends(&answer);
        (answer, src, dst)
    }

    /// `flow`'s source and destination, resolved.
    fn ends(&self, flow: &Flow) -> (Address<'_>, Address<'_>) {
        (
            self.address(flow.src, flow.src_port),
            self.address(flow.dst, flow.dst_port),
        )
    }

    /// The tracked part of a side: pre-DNAT tiers (host ingress), the normal tiers, then
    /// the profiles.
    fn tracked(
        &self,
        mode: Mode,
        ep: usize,
        ingress: bool,
        packet: Packet<'_>,
        sink: &mut impl Sink,
    ) -> Verdict {
        let endpoint = &self.endpoints[ep];
        let lists = self.endpoint_policies(ep);
        if endpoint.kind == EndpointKind::Host && ingress {
            let tiers = lists.get(mode, PolicyClass::PreDnat, true);
            if let Some(v) = self.walk_tiers(tiers, true, ingress, packet, sink) {
                return v;
            }
        }
        let tiers = lists.get(mode, PolicyClass::Normal, ingress);
        if let Some(v) = self.walk_tiers(tiers, false, ingress, packet, sink) {
            return v;
        }
        self.profiles(endpoint, ingress, packet, sink)
    }

    /// A hit that names host endpoint `ep` itself (failsafe, untracked reply).
    fn host_hit(&self, ep: usize, action: HitAction, rule: RuleRef) -> Hit {
        Hit {
            tier: None,
            policy: PolicyRef {
                kind: Kind::HostEndpoint,
                namespace: None,
                name: self.endpoints[ep].name.clone(),
            },
            action,
            rule,
        }
    }

    /// Walks tiers; `Some(verdict)` if a rule or an end of tier decided, `None` if every
    /// tier passed. `force_pass` makes every tier end in Pass (untracked, pre-DNAT).
    fn walk_tiers(
        &self,
        tiers: &[TierSlice],
        force_pass: bool,
        ingress: bool,
        packet: Packet<'_>,
        sink: &mut impl Sink,
    ) -> Option<Verdict> {
        'tiers: for slice in tiers {
            let tier = &self.tiers[slice.tier];
            sink.tier(tier);
            for &pi in &slice.policies {
                let policy = &self.policies[pi];
                let rules = if ingress {
                    &policy.ingress
                } else {
                    &policy.egress
                };
                for (ri, rule) in rules.iter().enumerate() {
                    if !packet.matches(rule) {
                        continue;
                    }
                    let hit = |action| {
                        move || Hit {
                            tier: Some(tier.name.clone()),
                            policy: policy.id.clone(),
                            action,
                            rule: RuleRef::Index(ri),
                        }
                    };
                    match rule.action {
                        Action::Log => sink.hit(hit(HitAction::Log)),
                        Action::Allow => {
                            sink.hit(hit(HitAction::Allow));
                            return Some(Verdict::Allow);
                        }
                        Action::Deny => {
                            sink.hit(hit(HitAction::Deny));
                            return Some(Verdict::Deny);
                        }
                        Action::Pass => {
                            sink.hit(hit(HitAction::Pass));
                            continue 'tiers;
                        }
                    }
                }
            }
            let pass = force_pass || tier.default_action == TierDefaultAction::Pass;
            if let Some(&trigger) = slice.policies.first() {
                sink.hit(|| Hit {
                    tier: Some(tier.name.clone()),
                    policy: self.policies[trigger].id.clone(),
                    action: if pass {
                        HitAction::Pass
                    } else {
                        HitAction::Deny
                    },
                    rule: RuleRef::EndOfTier,
                });
            }
            if !pass {
                return Some(Verdict::Deny);
            }
        }
        None
    }

    /// Profiles in order: the first matching Allow or Deny rule decides; Pass moves on to
    /// the next profile (as the dataplane does); a missing profile denies.
    fn profiles(
        &self,
        endpoint: &Endpoint,
        ingress: bool,
        packet: Packet<'_>,
        sink: &mut impl Sink,
    ) -> Verdict {
        let profile_ref = |name: &Name| PolicyRef {
            kind: Kind::Profile,
            namespace: None,
            name: name.clone(),
        };
        for name in &endpoint.profiles {
            let Some(profile) = self.profiles.get(&**name) else {
                sink.hit(|| Hit {
                    tier: None,
                    policy: profile_ref(name),
                    action: HitAction::Deny,
                    rule: RuleRef::NoProfile,
                });
                return Verdict::Deny;
            };
            let rules = if ingress {
                &profile.ingress
            } else {
                &profile.egress
            };
            for (ri, rule) in rules.iter().enumerate() {
                if !packet.matches(rule) {
                    continue;
                }
                let hit = |action| {
                    move || Hit {
                        tier: None,
                        policy: profile_ref(name),
                        action,
                        rule: RuleRef::Index(ri),
                    }
                };
                match rule.action {
                    Action::Log => sink.hit(hit(HitAction::Log)),
                    Action::Allow => {
                        sink.hit(hit(HitAction::Allow));
                        return Verdict::Allow;
                    }
                    Action::Deny => {
                        sink.hit(hit(HitAction::Deny));
                        return Verdict::Deny;
                    }
                    Action::Pass => {
                        sink.hit(hit(HitAction::Pass));
                        break;
                    }
                }
            }
        }
        sink.hit(|| Hit {
            tier: None,
            policy: PolicyRef {
                kind: Kind::Profile,
                namespace: None,
                name: Name::from(""),
            },
            action: HitAction::Deny,
            rule: RuleRef::NoProfile,
        });
        Verdict::Deny
    }
}
/// One packet as the walk sees it: the flow and its two addresses, resolved once.
#[derive(Clone, Copy)]
struct Packet<'a> {
    flow: &'a Flow,
    src: &'a Address<'a>,
    dst: &'a Address<'a>,
}

impl Packet<'_> {
    fn matches(&self, rule: &Rule) -> bool {
        rule.matches(self.flow, self.src, self.dst)
    }
}
