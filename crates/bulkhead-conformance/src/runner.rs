//! Running `netpol-case/v1` cases against a [`Backend`].
//!
//! The runner owns the case logic (fixture, steps, the probe matrix, expectations); a
//! backend only makes its world match the resources and answers "did this connection get
//! through?". The verdict of every probe comes from the backend. What packets cannot show
//! (pending verdicts, each side's verdict, what decided) is always checked against the
//! engine, so both modes judge the same things.

use std::net::IpAddr;

use bulkhead_api::values::Protocol;
use bulkhead_engine::{Cluster, Decision, Flow, RuleRef, Verdict};

use crate::case::{
    DecidedBy, Expect, ExpectedVerdict, FlowCheck, Loopback, NetpolCase, PortRef, Probe, RuleSpec,
    Step,
};
use crate::fixture::{CaseError, Fixture, FixturePod, protocol};

/// One connection attempt for a backend to make.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// Source endpoint id (`ns/pod`, `ext/NAME`, `host/NAME`).
    pub from: String,
    /// Destination endpoint id.
    pub to: String,
    /// The flow (addresses, protocol, port).
    pub flow: Flow,
}

/// Where probes run: in memory, or in a real dataplane.
pub trait Backend {
    /// Mode name for reports (`eval`, `dataplane`).
    fn name(&self) -> &'static str;

    /// Why this backend cannot run a case (e.g. a protocol the kernel cannot probe), or
    /// `None` to run it.
    fn skip_reason(&self, _case: &NetpolCase) -> Option<String> {
        None
    }

    /// Makes the backend's world match the fixture and its compiled cluster. Called after
    /// every step, before that step's probes.
    fn sync(&mut self, fixture: &Fixture, cluster: &Cluster) -> Result<(), String>;

    /// Runs the probes; returns one verdict per request, in order.
    fn probe(
        &mut self,
        cluster: &Cluster,
        requests: &[ProbeRequest],
    ) -> Result<Vec<Verdict>, String>;

    /// Tears down whatever the case created. Called once per case, also after failures.
    fn finish(&mut self) {}
}

/// The in-memory backend: the engine's verdict is the probe's result.
#[derive(Debug, Default)]
pub struct EvalBackend;

impl Backend for EvalBackend {
    fn name(&self) -> &'static str {
        "eval"
    }

    fn sync(&mut self, _fixture: &Fixture, _cluster: &Cluster) -> Result<(), String> {
        Ok(())
    }

    fn probe(
        &mut self,
        cluster: &Cluster,
        requests: &[ProbeRequest],
    ) -> Result<Vec<Verdict>, String> {
        Ok(requests
            .iter()
            .map(|r| cluster.evaluate(&r.flow).verdict())
            .collect())
    }
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseResult {
    /// Every expectation held.
    Pass,
    /// The first mismatch (or case error).
    Fail(String),
    /// Not run, and why.
    Skip(String),
}

/// Runs one case.
pub fn run_case(case: &NetpolCase, backend: &mut dyn Backend) -> CaseResult {
    if let Some(reason) = backend.skip_reason(case) {
        return CaseResult::Skip(reason);
    }
    let result = run_steps(case, backend);
    backend.finish();
    match result {
        Ok(None) => CaseResult::Pass,
        Ok(Some(mismatch)) => CaseResult::Fail(mismatch),
        Err(e) => CaseResult::Fail(e.0),
    }
}

fn run_steps(case: &NetpolCase, backend: &mut dyn Backend) -> Result<Option<String>, CaseError> {
    let mut fixture = Fixture::new(&case.model)?;
    let mut taken: Vec<IpAddr> = fixture
        .pods
        .iter()
        .flat_map(|p| [p.v4, p.v6])
        .flatten()
        .collect();
    for (i, step) in case.steps.iter().enumerate() {
        let label = match &step.name {
            Some(n) => format!("step {} ({n})", i + 1),
            None => format!("step {}", i + 1),
        };
        let at = |e: CaseError| CaseError(format!("{label}: {}", e.0));
        for d in &step.delete {
            fixture.delete(d).map_err(at)?;
        }
        if let Some(text) = &step.apply {
            fixture.apply(text, "apply").map_err(at)?;
        }
        for s in &step.set_labels {
            fixture.set_labels(s).map_err(at)?;
        }
        for p in &step.add_pods {
            fixture.add_pod(p, &mut taken).map_err(at)?;
        }
        for p in &step.delete_pods {
            fixture.delete_pod(p).map_err(at)?;
        }
        let cluster =
            Cluster::build(fixture.resources()).map_err(|e| at(CaseError(e.to_string())))?;
        backend
            .sync(&fixture, &cluster)
            .map_err(|e| at(CaseError(format!("{} backend: {e}", backend.name()))))?;
        if let Some(mismatch) = check_step(step, &fixture, &cluster, backend).map_err(at)? {
            return Ok(Some(format!("{label}: {mismatch}")));
        }
    }
    Ok(None)
}

/// A matrix cell or flow check with what is expected of it.
struct Check<'a> {
    request: ProbeRequest,
    expected: ExpectedVerdict,
    /// Set for explicit flow checks (their extra fields are checked against the engine).
    flow: Option<&'a FlowCheck>,
    /// A named port the destination does not have: the probe is a deny without traffic.
    unresolved_port: bool,
}

fn check_step(
    step: &Step,
    fixture: &Fixture,
    cluster: &Cluster,
    backend: &mut dyn Backend,
) -> Result<Option<String>, CaseError> {
    let mut checks = Vec::new();
    if !step.probes.is_empty() {
        let expect = step
            .expect
            .as_ref()
            .ok_or_else(|| CaseError("probes without expect".into()))?;
        for probe in &step.probes {
            matrix(probe, expect, fixture, &mut checks)?;
        }
    }
    for fc in &step.flows {
        checks.push(flow_check(fc, fixture)?);
    }
    let to_probe: Vec<ProbeRequest> = checks
        .iter()
        .filter(|c| !c.unresolved_port)
        .map(|c| c.request.clone())
        .collect();
    let mut verdicts = backend
        .probe(cluster, &to_probe)
        .map_err(|e| CaseError(format!("{} backend: {e}", backend.name())))?
        .into_iter();
    for c in &checks {
        let actual = if c.unresolved_port {
            Verdict::Deny
        } else {
            verdicts
                .next()
                .ok_or_else(|| CaseError("backend returned too few verdicts".into()))?
        };
        let what = describe(&c.request);
        if !same(actual, c.expected) {
            return Ok(Some(format!(
                "{what}: expected {}, got {actual}",
                word(c.expected)
            )));
        }
        if let Some(fc) = c.flow
            && let Some(m) = check_details(fc, &cluster.evaluate(&c.request.flow))
        {
            return Ok(Some(format!("{what}: {m}")));
        }
    }
    Ok(None)
}

fn matrix<'a>(
    probe: &Probe,
    expect: &Expect,
    fixture: &Fixture,
    out: &mut Vec<Check<'a>>,
) -> Result<(), CaseError> {
    let family = probe.family.unwrap_or(4);
    let proto = protocol(probe.protocol.as_deref())?;
    for src in &fixture.pods {
        for dst in &fixture.pods {
            let (Some(s), Some(d)) = (addr(src, family), addr(dst, family)) else {
                continue;
            };
            let expected = if src.id() == dst.id() {
                match expect.loopback {
                    Loopback::Ignore => continue,
                    Loopback::Allow => ExpectedVerdict::Allow,
                    Loopback::Deny => ExpectedVerdict::Deny,
                }
            } else {
                expected_cell(expect, probe, proto, family, src, dst, fixture)?
            };
            let (port, unresolved) = resolve_port(probe.port.as_ref(), proto, dst);
            out.push(Check {
                request: ProbeRequest {
                    from: src.id(),
                    to: dst.id(),
                    flow: make_flow(s, d, proto, port),
                },
                expected,
                flow: None,
                unresolved_port: unresolved,
            });
        }
    }
    Ok(())
}

/// The verdict `expect` gives the probe from `src` to `dst`: its default, unless an
/// override matching the pair, family, protocol and port says otherwise (the last wins).
fn expected_cell(
    expect: &Expect,
    probe: &Probe,
    proto: Protocol,
    family: u8,
    src: &FixturePod,
    dst: &FixturePod,
    fixture: &Fixture,
) -> Result<ExpectedVerdict, CaseError> {
    let (from, to) = (src.id(), dst.id());
    let mut verdict = expect.default;
    for o in &expect.overrides {
        if !pattern_matches(&o.from, &from, fixture) || !pattern_matches(&o.to, &to, fixture) {
            continue;
        }
        if o.family.is_some_and(|f| f != family) {
            continue;
        }
        if let Some(p) = &o.protocol
            && protocol(Some(p))? != proto
        {
            continue;
        }
        if let Some(op) = &o.port
            && !port_matches(op, probe.port.as_ref(), proto, dst)
        {
            continue;
        }
        verdict = o.verdict;
    }
    Ok(verdict)
}

fn port_matches(
    want: &PortRef,
    probe: Option<&PortRef>,
    proto: Protocol,
    dst: &FixturePod,
) -> bool {
    match (want, probe) {
        (_, None) => false,
        (PortRef::Number(a), Some(PortRef::Number(b))) => a == b,
        (PortRef::Name(a), Some(PortRef::Name(b))) => a == b,
        (PortRef::Number(a), Some(named)) => resolve_port(Some(named), proto, dst).0 == Some(*a),
        (PortRef::Name(_), Some(PortRef::Number(_))) => false,
    }
}

fn pattern_matches(pattern: &str, id: &str, fixture: &Fixture) -> bool {
    if pattern == "*" {
        return fixture.addresses_of(id).is_some();
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => id.split_once('/').is_some_and(|(p, _)| p == prefix),
        None => pattern == id,
    }
}

fn flow_check<'a>(fc: &'a FlowCheck, fixture: &Fixture) -> Result<Check<'a>, CaseError> {
    let family = fc.family.unwrap_or(4);
    let pick = |id: &str| -> Result<IpAddr, CaseError> {
        let ips = fixture
            .addresses_of(id)
            .ok_or_else(|| CaseError(format!("flow names unknown endpoint {id}")))?;
        ips.into_iter()
            .find(|ip| (family == 6) == ip.is_ipv6())
            .ok_or_else(|| CaseError(format!("flow: {id} has no IPv{family} address")))
    };
    let proto = protocol(fc.protocol.as_deref())?;
    let (port, unresolved) = match fixture.pods.iter().find(|p| p.id() == fc.to) {
        Some(dst) => resolve_port(fc.port.as_ref(), proto, dst),
        None => match &fc.port {
            Some(PortRef::Number(n)) => (Some(*n), false),
            Some(PortRef::Name(n)) => {
                return Err(CaseError(format!(
                    "flow: named port {n} needs a pod destination"
                )));
            }
            None => (None, false),
        },
    };
    Ok(Check {
        request: ProbeRequest {
            from: fc.from.clone(),
            to: fc.to.clone(),
            flow: make_flow(pick(&fc.from)?, pick(&fc.to)?, proto, port),
        },
        expected: fc.verdict,
        flow: Some(fc),
        unresolved_port: unresolved,
    })
}

fn check_details(fc: &FlowCheck, d: &Decision) -> Option<String> {
    if let Some(p) = fc.pending
        && !same(d.pending_verdict(), p)
    {
        return Some(format!(
            "pending: expected {}, got {}",
            word(p),
            d.pending_verdict()
        ));
    }
    let side_verdict =
        |s: &Option<bulkhead_engine::SideOutcome>| s.as_ref().map_or(Verdict::Allow, |s| s.verdict);
    if let Some(i) = fc.ingress {
        let got = side_verdict(&d.enforced.ingress);
        if !same(got, i) {
            return Some(format!("ingress: expected {}, got {got}", word(i)));
        }
    }
    if let Some(e) = fc.egress {
        let got = side_verdict(&d.enforced.egress);
        if !same(got, e) {
            return Some(format!("egress: expected {}, got {got}", word(e)));
        }
    }
    if let Some(want) = &fc.decided_by {
        let trace = d.enforced.trace_strings().join(", ");
        return match d.enforced.decided_by() {
            None => Some(format!(
                "decidedBy: expected {}, but no policy decided",
                show(want)
            )),
            Some(hit) if !decided_by_matches(want, hit) => Some(format!(
                "decidedBy: expected {}, got tier={} {}:{}/{} rule={} (trace: {trace})",
                show(want),
                hit.tier.as_deref().unwrap_or("-"),
                hit.policy.kind,
                hit.policy.namespace.as_deref().unwrap_or("-"),
                hit.policy.name,
                hit.rule
            )),
            Some(_) => None,
        };
    }
    None
}

fn decided_by_matches(want: &DecidedBy, hit: &bulkhead_engine::Hit) -> bool {
    let rule_ok = match (&want.rule, hit.rule) {
        (RuleSpec::Index(i), RuleRef::Index(j)) => *i == j,
        (RuleSpec::Word(w), r) => *w == r.to_string(),
        _ => false,
    };
    let name = (!hit.policy.name.is_empty()).then_some(&*hit.policy.name);
    rule_ok
        && want.tier.as_deref() == hit.tier.as_deref()
        && want.kind == hit.policy.kind.display_name()
        && want.namespace.as_deref() == hit.policy.namespace.as_deref()
        && want.name.as_deref() == name
}

fn show(d: &DecidedBy) -> String {
    let rule = match &d.rule {
        RuleSpec::Index(i) => i.to_string(),
        RuleSpec::Word(w) => w.clone(),
    };
    format!(
        "tier={} {}:{}/{} rule={rule}",
        d.tier.as_deref().unwrap_or("-"),
        d.kind,
        d.namespace.as_deref().unwrap_or("-"),
        d.name.as_deref().unwrap_or("-")
    )
}

fn addr(p: &FixturePod, family: u8) -> Option<IpAddr> {
    if family == 6 { p.v6 } else { p.v4 }
}

/// The port number a probe targets; `(None, true)` for a named port the destination lacks.
fn resolve_port(port: Option<&PortRef>, proto: Protocol, dst: &FixturePod) -> (Option<u16>, bool) {
    match port {
        None => (None, false),
        Some(PortRef::Number(n)) => (Some(*n), false),
        Some(PortRef::Name(name)) => {
            match dst.ports.iter().find(|(n, p, _)| n == name && *p == proto) {
                Some((_, _, number)) => (Some(*number), false),
                None => (None, true),
            }
        }
    }
}

fn make_flow(src: IpAddr, dst: IpAddr, proto: Protocol, port: Option<u16>) -> Flow {
    match (proto, port) {
        (Protocol::ICMP | Protocol::ICMPV6, _) => Flow::echo_request(src, dst),
        (p, Some(port)) => Flow::with_port(src, dst, p, port),
        (p, None) => Flow {
            src,
            dst,
            protocol: p,
            src_port: None,
            dst_port: None,
            icmp: None,
        },
    }
}

fn describe(r: &ProbeRequest) -> String {
    let port = r.flow.dst_port.map(|p| format!("/{p}")).unwrap_or_default();
    let fam = if r.flow.dst.is_ipv6() { " (IPv6)" } else { "" };
    format!("{} -> {} {}{port}{fam}", r.from, r.to, r.flow.protocol)
}

fn same(v: Verdict, e: ExpectedVerdict) -> bool {
    matches!(
        (v, e),
        (Verdict::Allow, ExpectedVerdict::Allow) | (Verdict::Deny, ExpectedVerdict::Deny)
    )
}

fn word(e: ExpectedVerdict) -> &'static str {
    match e {
        ExpectedVerdict::Allow => "allow",
        ExpectedVerdict::Deny => "deny",
    }
}
