//! `bulkhead get`: list or show resources from the server, as kubectl-style tables, YAML
//! or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use bulkhead_api::k8s::{LabelSelector, SelectorOperator};
use bulkhead_api::values::PolicyType;
use bulkhead_api::{Kind, Resource};
use bulkhead_client::paths::kind_names_help;
use bulkhead_client::{Client, kind_from_name};
use bulkhead_engine::failsafe::{FailsafePort, format_ports};
use bulkhead_engine::host_defaults::HostDefaultsLayer;

use super::login::ServerArgs;

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Columns, as kubectl prints them.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// YAML documents that `bulkhead apply` takes back.
    Yaml,
    /// JSON.
    Json,
}

/// Arguments of `bulkhead get`.
#[derive(clap::Args)]
#[command(
    after_help = "KIND is a kind's name, plural or short name: tier, gnp, np, knp (netpol),\n\
sgnp, snp, sknp, gns, netset, hep, wep, profile, ns, pod, sa.\n\n\
Examples:\n  bulkhead get gnp\n  bulkhead get np -A -o wide\n  \
bulkhead get pods -n shop -l \"app == 'web'\"\n  bulkhead get tier security -o yaml > security.yaml"
)]
pub struct Args {
    /// The kind of resource.
    kind: String,
    /// Names to show (default: list them all).
    names: Vec<String>,
    /// Namespace of namespaced kinds (default: `default`).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Only resources whose labels match this Calico selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
    #[command(flatten)]
    server: ServerArgs,
}

/// The kind a user names, or an error listing the names accepted.
pub fn parse_kind(name: &str) -> anyhow::Result<Kind> {
    kind_from_name(name).ok_or_else(|| {
        anyhow!(
            "unknown kind {name:?}: expected one of {}",
            kind_names_help()
        )
    })
}

/// The word for a kind in messages: `globalnetworkpolicy/x created`.
pub fn kind_word(kind: Kind) -> String {
    kind.display_name().to_ascii_lowercase()
}

/// Shows resources.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kind = parse_kind(&args.kind)?;
    let client = args.server.connect()?;
    let namespace = namespace_arg(kind, args.namespace.as_deref(), args.all_namespaces);
    let mut failed = false;
    let items = if args.names.is_empty() {
        let list = client
            .list(kind, namespace, args.selector.as_deref())
            .with_context(|| format!("listing {}", kind_word(kind)))?;
        for (key, errors) in &list.invalid {
            eprintln!("warning: {key} from the server does not load here: {errors}");
        }
        list.items
    } else {
        let mut items = Vec::new();
        for name in &args.names {
            match client.get(kind, namespace, name) {
                Ok(r) => items.push(r),
                Err(e) => {
                    eprintln!("error: {}/{name}: {e}", kind_word(kind));
                    failed = true;
                }
            }
        }
        items
    };
    let single = args.names.len() == 1;
    let out = match args.output {
        Format::Table | Format::Wide => {
            if items.is_empty() {
                if !failed {
                    match namespace {
                        Some(ns) if kind.is_namespaced() => {
                            eprintln!("No resources found in {ns} namespace.")
                        }
                        _ => eprintln!("No resources found."),
                    }
                }
                String::new()
            } else {
                let all_ns = kind.is_namespaced() && namespace.is_none();
                table(
                    kind,
                    &items,
                    all_ns,
                    args.output == Format::Wide,
                    SystemTime::now(),
                )
            }
        }
        Format::Yaml if single => items
            .first()
            .map(|r| to_yaml(&r.to_document()))
            .unwrap_or_default(),
        Format::Json if single => items
            .first()
            .map(|r| pretty_json(&r.to_document()))
            .unwrap_or_default(),
        Format::Yaml => to_yaml(&list_document(&items)),
        Format::Json => pretty_json(&list_document(&items)),
    };
    emit(&out);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes to standard output. A reader that went away (`bulkhead apply … | head`) is no
/// reason to panic or to stop half-way: the command goes on and ends with its own exit
/// code; only the output nobody reads is dropped.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("warning: writing to standard output: {e}");
    }
}

/// `-n`/`-A` for a kind: `None` means every namespace; cluster kinds ignore it.
pub fn namespace_arg(kind: Kind, namespace: Option<&str>, all: bool) -> Option<&str> {
    if !kind.is_namespaced() || all {
        None
    } else {
        Some(namespace.unwrap_or("default"))
    }
}

/// A `v1` `List` of documents (what `-o yaml|json` prints for several objects; `bulkhead
/// apply` takes it back).
pub fn list_document(items: &[Resource]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": items.iter().map(Resource::to_document).collect::<Vec<_>>(),
    })
}

/// A document as YAML (block style, strings quoted where YAML 1.2 would read them as
/// something else).
pub fn to_yaml(doc: &serde_json::Value) -> String {
    let doc = &whole_numbers(doc.clone());
    match serde_saphyr::to_string(doc) {
        Ok(s) if s.ends_with('\n') => s,
        Ok(s) => s + "\n",
        // A JSON value always serialises; fall back to JSON (valid YAML) regardless.
        Err(_) => pretty_json(doc),
    }
}

fn pretty_json(doc: &serde_json::Value) -> String {
    serde_json::to_string_pretty(&whole_numbers(doc.clone())).unwrap_or_default() + "\n"
}

/// Floats without a fraction as integers (`order: 100`, not `100.0`), as users write them.
fn whole_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(whole_numbers).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, whole_numbers(v))).collect())
        }
        v => v,
    }
}

/// Renders resources of one kind as a table; `all_namespaces` adds a NAMESPACE column,
/// `wide` the extra columns.
pub fn table(
    kind: Kind,
    items: &[Resource],
    all_namespaces: bool,
    wide: bool,
    now: SystemTime,
) -> String {
    let (base, extra) = columns(kind);
    let mut header: Vec<&str> = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE");
    }
    header.extend(base);
    header.push("AGE");
    if wide {
        header.extend(extra);
    }
    let mut sorted: Vec<&Resource> = items.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.meta().namespace, &a.meta().name).cmp(&(&b.meta().namespace, &b.meta().name))
    });
    let rows: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|r| {
            let (base, extra) = cells(r);
            let mut row = Vec::new();
            if all_namespaces {
                row.push(r.meta().namespace.clone().unwrap_or_default());
            }
            row.extend(base);
            row.push(age(r.meta().creation_timestamp.as_ref(), now));
            if wide {
                row.extend(extra);
            }
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("   ");
            }
            let _ = write!(text, "{cell:<width$}", width = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Column names per kind: the default ones and the ones `-o wide` adds.
fn columns(kind: Kind) -> (Vec<&'static str>, Vec<&'static str>) {
    match kind {
        Kind::Tier => (vec!["NAME", "ORDER", "DEFAULT-ACTION"], vec!["LABELS"]),
        Kind::GlobalNetworkPolicy | Kind::NetworkPolicy => (
            vec!["NAME", "TIER", "ORDER", "SELECTOR"],
            vec!["TYPES", "INGRESS", "EGRESS", "LABELS"],
        ),
        Kind::StagedGlobalNetworkPolicy | Kind::StagedNetworkPolicy => (
            vec!["NAME", "TIER", "ORDER", "SELECTOR", "ACTION"],
            vec!["TYPES", "INGRESS", "EGRESS", "LABELS"],
        ),
        Kind::KubernetesNetworkPolicy => (
            vec!["NAME", "POD-SELECTOR"],
            vec!["TYPES", "INGRESS", "EGRESS", "LABELS"],
        ),
        Kind::StagedKubernetesNetworkPolicy => (
            vec!["NAME", "POD-SELECTOR", "ACTION"],
            vec!["TYPES", "INGRESS", "EGRESS", "LABELS"],
        ),
        Kind::GlobalNetworkSet | Kind::NetworkSet => (vec!["NAME", "NETS"], vec!["LABELS"]),
        Kind::HostEndpoint => (
            vec!["NAME", "NODE", "INTERFACE", "IPS"],
            vec!["PROFILES", "LABELS"],
        ),
        Kind::WorkloadEndpoint => (
            vec!["NAME", "NODE", "IPS"],
            vec!["INTERFACE", "WORKLOAD", "PROFILES", "LABELS"],
        ),
        Kind::Profile => (vec!["NAME"], vec!["INGRESS", "EGRESS", "LABELS-TO-APPLY"]),
        Kind::Namespace => (vec!["NAME"], vec!["LABELS"]),
        Kind::Pod => (
            vec!["NAME", "NODE", "IP"],
            vec!["SERVICE-ACCOUNT", "LABELS"],
        ),
        Kind::ServiceAccount => (vec!["NAME"], vec!["LABELS"]),
        Kind::FelixConfiguration => (
            vec![
                "NAME",
                "FAILSAFE-INBOUND",
                "FAILSAFE-OUTBOUND",
                "ENDPOINT-TO-HOST",
            ],
            vec!["NOT-ENFORCED"],
        ),
        Kind::Node => (vec!["NAME", "ADDRESSES"], vec!["LABELS"]),
    }
}

/// The cells of one row, matching [`columns`].
fn cells(r: &Resource) -> (Vec<String>, Vec<String>) {
    let name = r.meta().name.clone();
    let labels = labels(&r.meta().labels);
    let types = |t: &[PolicyType]| {
        if t.is_empty() {
            NONE.to_string()
        } else {
            t.iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let tier = |t: &Option<String>| t.clone().unwrap_or_else(|| "default".into());
    let selector = |s: &Option<String>| {
        s.as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("all()")
            .to_string()
    };
    let action = |a: Option<bulkhead_api::values::StagedAction>| {
        a.map_or_else(|| "Set".to_string(), |a| format!("{a:?}"))
    };
    match r {
        Resource::Tier(o) => (
            vec![
                name,
                order(o.spec.order),
                o.spec
                    .default_action
                    .map_or_else(|| "Deny".into(), |a| format!("{a:?}")),
            ],
            vec![labels],
        ),
        Resource::GlobalNetworkPolicy(o) | Resource::StagedGlobalNetworkPolicy(o) => {
            let s = &o.spec;
            let mut base = vec![name, tier(&s.tier), order(s.order), selector(&s.selector)];
            if r.kind().is_staged() {
                base.push(action(s.staged_action));
            }
            (
                base,
                vec![
                    types(&s.types),
                    s.ingress.len().to_string(),
                    s.egress.len().to_string(),
                    labels,
                ],
            )
        }
        Resource::NetworkPolicy(o) | Resource::StagedNetworkPolicy(o) => {
            let s = &o.spec;
            let mut base = vec![name, tier(&s.tier), order(s.order), selector(&s.selector)];
            if r.kind().is_staged() {
                base.push(action(s.staged_action));
            }
            (
                base,
                vec![
                    types(&s.types),
                    s.ingress.len().to_string(),
                    s.egress.len().to_string(),
                    labels,
                ],
            )
        }
        Resource::KubernetesNetworkPolicy(o) | Resource::StagedKubernetesNetworkPolicy(o) => {
            let s = &o.spec;
            let mut base = vec![name, label_selector(&s.pod_selector)];
            if r.kind().is_staged() {
                base.push(action(s.staged_action));
            }
            (
                base,
                vec![
                    types(&s.policy_types),
                    s.ingress.len().to_string(),
                    s.egress.len().to_string(),
                    labels,
                ],
            )
        }
        Resource::GlobalNetworkSet(o) | Resource::NetworkSet(o) => {
            (vec![name, list(&o.spec.nets)], vec![labels])
        }
        Resource::HostEndpoint(o) => (
            vec![
                name,
                text(&o.spec.node),
                text(&o.spec.interface_name),
                list(&o.spec.expected_ips),
            ],
            vec![list(&o.spec.profiles), labels],
        ),
        Resource::WorkloadEndpoint(o) => (
            vec![name, text(&o.spec.node), list(&o.spec.ip_networks)],
            vec![
                text(&o.spec.interface_name),
                text(&o.spec.workload),
                list(&o.spec.profiles),
                labels,
            ],
        ),
        Resource::Profile(o) => (
            vec![name],
            vec![
                o.spec.ingress.len().to_string(),
                o.spec.egress.len().to_string(),
                self::labels(&o.spec.labels_to_apply),
            ],
        ),
        Resource::Namespace(_) | Resource::ServiceAccount(_) => (vec![name], vec![labels]),
        Resource::FelixConfiguration(o) => {
            // As the agent reads them; unset means the next source's value (another
            // configuration, else Felix's default), an empty list `none`.
            let layer = HostDefaultsLayer::from_spec(&o.spec);
            let unset = || UNSET.to_string();
            let ports =
                |l: &Option<Vec<FailsafePort>>| l.as_deref().map_or_else(unset, format_ports);
            let other: Vec<String> = o.spec.other.keys().cloned().collect();
            (
                vec![
                    name,
                    ports(&layer.failsafe_inbound),
                    ports(&layer.failsafe_outbound),
                    layer.endpoint_to_host.map_or_else(unset, |a| a.to_string()),
                ],
                vec![list(&other)],
            )
        }
        Resource::Node(o) => {
            let mut addresses: Vec<String> = Vec::new();
            for (_, a) in o.spec.addresses() {
                if !addresses.iter().any(|x| x == a) {
                    addresses.push(a.to_string());
                }
            }
            (vec![name, list(&addresses)], vec![labels])
        }
        Resource::Pod(p) => {
            let mut ips: Vec<String> = p.status.pod_ips.iter().map(|i| i.ip.clone()).collect();
            if ips.is_empty() {
                ips.extend(p.status.pod_ip.clone());
            }
            (
                vec![
                    name,
                    p.spec.node_name.clone().unwrap_or_else(|| NONE.into()),
                    list(&ips),
                ],
                vec![
                    p.spec
                        .service_account_name
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    labels,
                ],
            )
        }
    }
}

const NONE: &str = "<none>";
/// A setting a FelixConfiguration leaves to the next source.
const UNSET: &str = "<unset>";

fn text(s: &str) -> String {
    if s.is_empty() {
        NONE.into()
    } else {
        s.to_string()
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        NONE.into()
    } else {
        v.join(",")
    }
}

fn labels(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        NONE.into()
    } else {
        map.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// An order as written (`100`, `100.5`), `<none>` if unset.
pub fn order(o: Option<f64>) -> String {
    match o {
        None => NONE.into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => v.to_string(),
    }
}

/// A Kubernetes label selector as kubectl prints it (`app=web,tier in (a,b)`).
pub fn label_selector(s: &LabelSelector) -> String {
    if s.is_empty() {
        return NONE.into();
    }
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &s.match_expressions {
        parts.push(match e.operator {
            SelectorOperator::In => format!("{} in ({})", e.key, e.values.join(",")),
            SelectorOperator::NotIn => format!("{} notin ({})", e.key, e.values.join(",")),
            SelectorOperator::Exists => e.key.clone(),
            SelectorOperator::DoesNotExist => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// Time since `created` as kubectl prints it (`45s`, `3m12s`, `5h`, `2d3h`, `400d`).
pub fn age(created: Option<&serde_json::Value>, now: SystemTime) -> String {
    let Some(t) = created.and_then(|v| v.as_str()).and_then(parse_rfc3339) else {
        return "<unknown>".into();
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    human_duration((now - t).max(0) as u64)
}

fn human_duration(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            m => format!("{h}h{m}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        match h % 24 {
            0 => format!("{d}d"),
            h => format!("{d}d{h}h"),
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2026-01-02T03:04:05Z`, fractions and
/// offsets allowed).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if s.get(4..5)? != "-" || s.get(7..8)? != "-" || !matches!(s.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let oh: i64 = r.get(1..3)?.parse().ok()?;
            let om: i64 = r.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if r.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

/// Lists everything the server holds, for commands that build a model (`describe`).
pub fn everything(client: &Client) -> anyhow::Result<Vec<Resource>> {
    let (all, _) = client.list_all().context("listing every resource")?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::load_str;
    use std::time::Duration;

    fn load(text: &str) -> Vec<Resource> {
        load_str("t", text)
            .expect("loads")
            .into_iter()
            .map(|l| l.resource)
            .collect()
    }

    fn at(rfc: &str) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(parse_rfc3339(rfc).expect("time") as u64)
    }

    #[test]
    fn rfc3339_and_ages() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2026-01-02T03:04:05.123+01:00"),
            parse_rfc3339("2026-01-02T02:04:05Z")
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        let ages = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (1800, "30m"),
            (4 * 3600 + 60 * 5, "4h5m"),
            (20 * 3600, "20h"),
            (3 * 86400 + 3600, "3d1h"),
            (40 * 86400, "40d"),
            (800 * 86400, "2y70d"),
        ];
        for (secs, text) in ages {
            assert_eq!(human_duration(secs), text);
        }
        let created = serde_json::json!("2026-01-02T03:04:05Z");
        assert_eq!(age(Some(&created), at("2026-01-02T03:05:05Z")), "60s");
        assert_eq!(age(None, SystemTime::now()), "<unknown>");
    }

    #[test]
    fn policy_tables() {
        let items = load(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: shop\n  creationTimestamp: \"2026-01-01T00:00:00Z\"\nspec:\n  tier: app\n  order: 100\n  selector: app == 'web'\n  ingress: [{action: Allow}]\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: db, namespace: data, labels: {x: y}}\nspec: {order: 2.5, egress: [{action: Deny}]}\n",
        );
        let now = at("2026-01-01T00:10:00Z");
        let t = table(Kind::NetworkPolicy, &items, false, false, now);
        assert_eq!(
            t,
            "NAME   TIER      ORDER   SELECTOR       AGE\n\
             db     default   2.5     all()          <unknown>\n\
             web    app       100     app == 'web'   10m\n"
        );
        let t = table(Kind::NetworkPolicy, &items, true, true, now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME   TIER      ORDER   SELECTOR       AGE         TYPES     INGRESS   EGRESS   LABELS"
        );
        assert!(lines[1].starts_with("data        db "), "{t}");
        assert!(
            lines[1].ends_with("Egress    0         1        x=y"),
            "{t}"
        );
        assert!(
            lines[2].contains("Ingress   1         0        <none>"),
            "{t}"
        );
    }

    #[test]
    fn tables_for_every_kind() {
        let items = load(
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: h1, labels: {role: db}}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [10.0.0.1]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\nspec: {nodeName: n1}\nstatus: {podIP: 10.1.0.1}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: shop}\nspec: {podSelector: {matchLabels: {app: web}, matchExpressions: [{key: t, operator: In, values: [a, b]}]}}\n",
        );
        let now = SystemTime::now();
        let hep = table(Kind::HostEndpoint, &items[..1], false, true, now);
        assert!(hep.starts_with("NAME   NODE   INTERFACE   IPS        AGE         PROFILES   LABELS\nh1     n1     eth0        10.0.0.1"), "{hep}");
        let pod = table(Kind::Pod, &items[1..2], false, false, now);
        assert!(pod.contains("a      n1     10.1.0.1"), "{pod}");
        let knp = table(
            Kind::KubernetesNetworkPolicy,
            &items[2..],
            false,
            false,
            now,
        );
        assert!(knp.contains("app=web,t in (a,b)"), "{knp}");
        // Every kind has as many cells as columns.
        for kind in Kind::ALL {
            let (base, extra) = columns(kind);
            for r in items.iter().filter(|r| r.kind() == kind) {
                let (b, e) = cells(r);
                assert_eq!((b.len(), e.len()), (base.len(), extra.len()), "{kind}");
            }
        }
    }

    #[test]
    fn yaml_output_round_trips_through_the_loader() {
        let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: tricky\n  labels: {a: 'yes', b: 'null', c: '1.0', d: '0x1F', f: 'true', g: '', h: '0o17', i: '1e3'}\n  annotations: {note: \"line one\\nline two: with colon\", q: \"it's \\\"quoted\\\"\", t: '~', u: '- dash', v: '#hash', w: ': colon', x: ' lead', y: '@at', z: '*star', z1: '&amp', z2: '!bang', z3: '%pct', z4: '{brace', z5: '[br', z6: '.inf', z7: '-.5', z8: 'NaN', z9: '', z10: 'a: b', z11: \"trailing \"}\n  resourceVersion: '42'\nspec:\n  order: 10.5\n  selector: \"app == 'web' && has(x)\"\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source: {nets: ['10.0.0.0/8'], notSelector: \"a in {'x', 'y'}\"}\n    destination: {ports: [80, '8000:8080', http]}\n";
        let items = load(text);
        let yaml = to_yaml(&items[0].to_document());
        let back = load(&yaml);
        assert_eq!(back, items, "{yaml}");
        // A list of several kinds round-trips too.
        let all = load(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: 'no'}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop}\nspec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}\nstatus: {podIP: 10.1.0.1}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100, defaultAction: Pass}\n",
        );
        let yaml = to_yaml(&list_document(&all));
        assert_eq!(load(&yaml), all, "{yaml}");
    }

    #[test]
    fn orders_print_as_written() {
        assert_eq!(order(Some(100.0)), "100");
        assert_eq!(order(Some(-1.0)), "-1");
        assert_eq!(order(Some(2.25)), "2.25");
        assert_eq!(order(None), "<none>");
    }
}
