//! Read-only views of a [`Cluster`] for code that renders it elsewhere (the dataplane):
//! per-endpoint tier lists, profiles, and the members of selector and named-port sets.
//!
//! These expose the engine's own compiled model, so the dataplane enforces exactly what
//! `evaluate` computes; nothing here re-implements a semantic rule.

use std::collections::BTreeSet;
use std::net::IpAddr;

use bulkhead_api::values::Protocol;
use bulkhead_selector::Selector;
use ipnet::IpNet;

use crate::compile::{Policy, PolicyClass, Profile};
use crate::decision::EndpointKind;
use crate::endpoint::Endpoint;
use crate::model::{Cluster, Mode, Tier};

/// One tier's policies for an endpoint and direction, in evaluation order.
#[derive(Debug, Clone)]
pub struct TierView<'a> {
    /// The tier.
    pub tier: &'a Tier,
    /// Its policies that apply, in order.
    pub policies: Vec<&'a Policy>,
}

impl Cluster {
    /// Index of the endpoint of `kind` named `namespace/name` (hosts: no namespace).
    pub fn endpoint_index(
        &self,
        kind: EndpointKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|e| e.kind == kind && e.namespace.as_deref() == namespace && &*e.name == name)
    }

    /// The endpoint at `index`.
    pub fn endpoint(&self, index: usize) -> Option<&Endpoint> {
        self.endpoints.get(index)
    }

    /// The tiers and policies of one class that apply to endpoint `index` in one
    /// direction, in evaluation order.
    pub fn endpoint_tiers(
        &self,
        index: usize,
        mode: Mode,
        class: PolicyClass,
        ingress: bool,
    ) -> Vec<TierView<'_>> {
        if index >= self.endpoints.len() {
            return Vec::new();
        }
        self.endpoint_policies(index)
            .get(mode, class, ingress)
            .iter()
            .map(|s| TierView {
                tier: &self.tiers[s.tier],
                policies: s.policies.iter().map(|&i| &self.policies[i]).collect(),
            })
            .collect()
    }

    /// A profile by name (`None`: it does not exist, which denies).
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// The members of a selector's address set: the addresses of every endpoint and the
    /// CIDRs of every network set whose labels match.
    pub fn selector_members(&self, selector: &Selector) -> BTreeSet<IpNet> {
        let endpoints = self
            .endpoints
            .iter()
            .filter(|e| selector.matches(&e.labels))
            .flat_map(|e| e.ips.iter().map(|ip| IpNet::from(*ip)));
        let sets = self
            .network_sets
            .iter()
            .filter(|s| selector.matches(&s.labels))
            .flat_map(|s| s.nets.iter().map(IpNet::trunc));
        endpoints.chain(sets).collect()
    }

    /// The members of a named-port set: `(address, protocol, port)` of every endpoint that
    /// matches `selector` (any endpoint when `None`) and has a port called one of `names`
    /// with `protocol`.
    pub fn named_port_members(
        &self,
        selector: Option<&Selector>,
        names: &[String],
        protocol: Protocol,
    ) -> BTreeSet<(IpAddr, Protocol, u16)> {
        let mut out = BTreeSet::new();
        for e in &self.endpoints {
            if selector.is_some_and(|s| !s.matches(&e.labels)) {
                continue;
            }
            for p in &e.ports {
                if p.protocol == protocol && names.contains(&p.name) {
                    out.extend(e.ips.iter().map(|ip| (*ip, protocol, p.port)));
                }
            }
        }
        out
    }
}
