//! `bulkhead describe`: one resource in words, with what the engine makes of it now —
//! how many endpoints a policy selects and its rules; which policies select an endpoint.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use bulkhead_api::{Kind, LabelMap, Resource};
use bulkhead_engine::Cluster;
use bulkhead_engine::compile::Policy;
use bulkhead_engine::endpoint::Endpoint;
use bulkhead_engine::explain::describe_rule;

use super::get::{age, emit, everything, kind_word, namespace_arg, order, parse_kind, to_yaml};
use super::login::ServerArgs;

/// Arguments of `bulkhead describe`.
#[derive(clap::Args)]
#[command(
    after_help = "For a policy: tier, order, types, selector, how many endpoints it selects now,\n\
and its rules in words. For an endpoint (pod, wep, hep): its labels and the policies\n\
that select it, in evaluation order. For a tier: its policies in order.\n\n\
Examples:\n  bulkhead describe gnp deny-all\n  bulkhead describe pod frontend -n shop"
)]
pub struct Args {
    /// The kind of resource.
    kind: String,
    /// Its name.
    name: String,
    /// Namespace of namespaced kinds (default: `default`).
    #[arg(short, long)]
    namespace: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// Describes one resource.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kind = parse_kind(&args.kind)?;
    let client = args.server.connect()?;
    let namespace = namespace_arg(kind, args.namespace.as_deref(), false);
    let object = client
        .get(kind, namespace, &args.name)
        .with_context(|| format!("{}/{}", kind_word(kind), args.name))?;
    let needs_model = kind.is_policy()
        || matches!(
            kind,
            Kind::Tier | Kind::Pod | Kind::WorkloadEndpoint | Kind::HostEndpoint
        );
    let model = if needs_model {
        let all = everything(&client)?;
        Some(Cluster::build(&all).map_err(|e| e.to_string()))
    } else {
        None
    };
    emit(&describe(
        &object,
        model.as_ref(),
        std::time::SystemTime::now(),
    ));
    Ok(ExitCode::SUCCESS)
}

/// The description of `object`; `model` is the cluster built from everything the server
/// holds (or why it could not be built).
pub fn describe(
    object: &Resource,
    model: Option<&Result<Cluster, String>>,
    now: std::time::SystemTime,
) -> String {
    let mut out = String::new();
    let meta = object.meta();
    let kind = object.kind();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{:<16}{value}", format!("{name}:"));
    };
    field("Name", &meta.name);
    if let Some(ns) = meta.namespace.as_deref().filter(|_| kind.is_namespaced()) {
        field("Namespace", ns);
    }
    field(
        "Kind",
        &format!("{} ({})", kind.display_name(), kind.api_version()),
    );
    field("Labels", &labels(&meta.labels));
    if !meta.annotations.is_empty() {
        field("Annotations", &labels(&meta.annotations));
    }
    field("Age", &age(meta.creation_timestamp.as_ref(), now));
    let cluster = match model {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            let _ = writeln!(
                out,
                "\nWarning: the resources on the server do not form a model, so selection is unknown:\n  {e}"
            );
            None
        }
        None => None,
    };
    if kind.is_policy() {
        describe_policy(&mut out, object, cluster);
    } else if let Some(cluster) = cluster {
        match object {
            Resource::Tier(t) => describe_tier(&mut out, &t.metadata.name, cluster),
            Resource::Pod(_) | Resource::WorkloadEndpoint(_) => {
                let ns = meta.namespace.as_deref().unwrap_or("default");
                describe_endpoint(&mut out, cluster.workload(ns, &meta.name), cluster);
            }
            Resource::HostEndpoint(_) => {
                describe_endpoint(&mut out, cluster.host(&meta.name), cluster)
            }
            _ => {}
        }
    }
    let detailed = kind.is_policy()
        || (cluster.is_some()
            && matches!(
                kind,
                Kind::Tier | Kind::Pod | Kind::WorkloadEndpoint | Kind::HostEndpoint
            ));
    if !detailed {
        let _ = writeln!(out, "\nDefinition:");
        for line in to_yaml(&super::apply::user_document(object)).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn describe_policy(out: &mut String, object: &Resource, cluster: Option<&Cluster>) {
    let key = object.key();
    let compiled = cluster.and_then(|c| {
        c.policies().iter().find(|p| {
            p.id.kind == key.kind
                && p.id.namespace.as_deref() == key.namespace.as_deref()
                && *p.id.name == *key.name
        })
    });
    let Some(policy) = compiled else {
        // Not compiled: a staged Delete, or no model. Say what the spec says.
        let doc = object.to_document();
        let spec = &doc["spec"];
        let _ = writeln!(
            out,
            "{:<16}{}",
            "Tier:",
            spec["tier"].as_str().unwrap_or("default")
        );
        let _ = writeln!(out, "{:<16}{}", "Order:", order(spec["order"].as_f64()));
        if let Some(a) = spec["stagedAction"].as_str() {
            let _ = writeln!(out, "{:<16}{a}", "Staged action:");
        }
        if cluster.is_some() {
            let _ = writeln!(
                out,
                "\nThis staged policy removes the enforced policy of the same name when promoted; it selects nothing itself."
            );
        }
        return;
    };
    let c = cluster.expect("compiled implies a model");
    let types: Vec<&str> = [
        (policy.ingress_type, "Ingress"),
        (policy.egress_type, "Egress"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, t)| *t)
    .collect();
    let _ = writeln!(out, "{:<16}{}", "Tier:", policy.tier);
    let _ = writeln!(out, "{:<16}{}", "Order:", order(policy.order));
    let _ = writeln!(out, "{:<16}{}", "Types:", types.join(", "));
    let _ = writeln!(out, "{:<16}{}", "Selector:", policy.selector);
    if let Some(action) = policy.staged {
        let _ = writeln!(
            out,
            "{:<16}{action:?} (staged: previewed, never enforced)",
            "Staged action:"
        );
    }
    let n = c.count_selected(policy);
    let _ = writeln!(
        out,
        "{:<16}{n} endpoint{} now",
        "Selects:",
        if n == 1 { "" } else { "s" }
    );
    rules(out, "Ingress rules", policy, true);
    rules(out, "Egress rules", policy, false);
}

fn rules(out: &mut String, title: &str, policy: &Policy, ingress: bool) {
    let (governs, list) = if ingress {
        (policy.ingress_type, &policy.ingress)
    } else {
        (policy.egress_type, &policy.egress)
    };
    if !governs && list.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}:");
    if list.is_empty() {
        let _ = writeln!(
            out,
            "  (none: selected endpoints get the tier's default action)"
        );
    }
    for (i, r) in list.iter().enumerate() {
        let _ = writeln!(out, "  {}. {}", i + 1, describe_rule(r));
    }
}

fn describe_tier(out: &mut String, name: &str, cluster: &Cluster) {
    if let Some(t) = cluster.tiers().iter().find(|t| &*t.name == name) {
        let _ = writeln!(out, "{:<16}{}", "Order:", order(t.order));
        let _ = writeln!(out, "{:<16}{:?}", "Default action:", t.default_action);
    }
    let policies: Vec<&Policy> = cluster
        .policies()
        .iter()
        .filter(|p| p.tier == name)
        .collect();
    let _ = writeln!(out, "\nPolicies (in evaluation order):");
    if policies.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (i, p) in policies.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {} (order {}, selects {})",
            i + 1,
            p.id,
            order(p.order),
            cluster.count_selected(p)
        );
    }
}

fn describe_endpoint(out: &mut String, endpoint: Option<&Endpoint>, cluster: &Cluster) {
    let Some(ep) = endpoint else {
        let _ = writeln!(
            out,
            "\nNot an endpoint in the model (a host-network pod, or no address yet)."
        );
        return;
    };
    let ips: Vec<String> = ep.ips.iter().map(|i| i.to_string()).collect();
    let _ = writeln!(out, "{:<16}{}", "IPs:", ips.join(", "));
    let _ = writeln!(out, "{:<16}{}", "Profiles:", ep.profiles.join(", "));
    let _ = writeln!(
        out,
        "\nLabels seen by selectors (own; derived from its namespace, service account, profiles):"
    );
    for (k, v) in ep.labels.iter() {
        let own = if ep.own_labels.get(k) == Some(v) {
            ""
        } else {
            "  (derived)"
        };
        let _ = writeln!(out, "  {k}={v}{own}");
    }
    let policies = cluster.policies_selecting(ep);
    let _ = writeln!(out, "\nPolicies selecting it (in evaluation order):");
    if policies.is_empty() {
        let _ = writeln!(out, "  (none: its profiles decide)");
    }
    for (i, p) in policies.iter().enumerate() {
        let dirs: Vec<&str> = [(p.ingress_type, "ingress"), (p.egress_type, "egress")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, d)| *d)
            .collect();
        let staged = if p.staged.is_some() { ", staged" } else { "" };
        let _ = writeln!(
            out,
            "  {}. tier {}: {} (order {}; {}{staged})",
            i + 1,
            p.tier,
            p.id,
            order(p.order),
            dirs.join(", ")
        );
    }
}

fn labels(map: &LabelMap) -> String {
    if map.is_empty() {
        "<none>".into()
    } else {
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::load_str;

    const WORLD: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.web}\nspec:\n  tier: security\n  order: 10\n  selector: app == 'web'\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]\n  egress: [{action: Deny}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: w1, namespace: shop, labels: {app: web}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.1.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: w2, namespace: shop, labels: {app: web}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.1.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.1.0.3}\n";

    fn world() -> (Vec<Resource>, Result<Cluster, String>) {
        let all: Vec<Resource> = load_str("t", WORLD)
            .expect("loads")
            .into_iter()
            .map(|l| l.resource)
            .collect();
        let c = Cluster::build(&all).map_err(|e| e.to_string());
        (all, c)
    }

    #[test]
    fn a_policy_in_words() {
        let (all, c) = world();
        let text = describe(&all[1], Some(&c), std::time::SystemTime::now());
        assert!(text.contains("Tier:           security"), "{text}");
        assert!(text.contains("Order:          10"), "{text}");
        assert!(text.contains("Types:          Ingress, Egress"), "{text}");
        assert!(text.contains("Selects:        2 endpoints now"), "{text}");
        assert!(text.contains("Ingress rules:\n  1. Allow TCP"), "{text}");
        assert!(text.contains("Egress rules:\n  1. Deny"), "{text}");
    }

    #[test]
    fn an_endpoint_and_its_policies() {
        let (all, c) = world();
        let text = describe(&all[2], Some(&c), std::time::SystemTime::now());
        assert!(text.contains("IPs:            10.1.0.1"), "{text}");
        assert!(text.contains("app=web"), "{text}");
        assert!(
            text.contains("1. tier security: gnp:security.web (order 10; ingress, egress)"),
            "{text}"
        );
        let text = describe(&all[4], Some(&c), std::time::SystemTime::now());
        assert!(text.contains("(none: its profiles decide)"), "{text}");
        let text = describe(&all[0], Some(&c), std::time::SystemTime::now());
        assert!(
            text.contains("1. gnp:security.web (order 10, selects 2)"),
            "{text}"
        );
    }
}
