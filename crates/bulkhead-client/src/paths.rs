//! Where each kind lives in the HTTP API (`docs/api.md`, "Paths"), and the names users
//! may call a kind by on the command line.

use bulkhead_api::Kind;

/// The API group prefix a kind is served under.
pub fn group_prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::KubernetesNetworkPolicy => "/apis/networking.k8s.io/v1",
        Kind::Namespace | Kind::Pod | Kind::ServiceAccount => "/api/v1",
        _ => "/apis/projectcalico.org/v3",
    }
}

/// The collection path. For a namespaced kind, `None` is the collection across every
/// namespace (list and watch only); for other kinds the namespace is ignored.
pub fn collection_path(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.is_namespaced() => format!(
            "{}/namespaces/{}/{}",
            group_prefix(kind),
            segment(ns),
            kind.plural()
        ),
        _ => format!("{}/{}", group_prefix(kind), kind.plural()),
    }
}

/// The object path. A namespaced kind without a namespace is in `default`.
pub fn object_path(kind: Kind, namespace: Option<&str>, name: &str) -> String {
    let ns = kind.is_namespaced().then(|| namespace.unwrap_or("default"));
    format!("{}/{}", collection_path(kind, ns), segment(name))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The kind a user means by `name`: the kind as written in documents (any case), its
/// singular or plural lower-case name, or a short name (`gnp`, `np`, `knp`, `netpol`,
/// `hep`, `wep`, `gns`, `netset`, `ns`, `sa`, `po`, `sgnp`, `snp`, `sknp`, …). Plain
/// `networkpolicy` is Calico's (as with calicoctl); Kubernetes' is `knp`, `netpol` or
/// `networkpolicies.networking.k8s.io`.
pub fn kind_from_name(name: &str) -> Option<Kind> {
    let lower = name.trim().to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((b, g)) => (b, Some(g)),
        None => (lower.as_str(), None),
    };
    let kind = match base {
        "tier" | "tiers" => Kind::Tier,
        "globalnetworkpolicy" | "globalnetworkpolicies" | "gnp" => Kind::GlobalNetworkPolicy,
        "networkpolicy" | "networkpolicies" | "np" | "calico-np" => match group {
            Some("networking.k8s.io") => Kind::KubernetesNetworkPolicy,
            _ => Kind::NetworkPolicy,
        },
        "kubernetesnetworkpolicy" | "kubernetesnetworkpolicies" | "knp" | "netpol" | "netpols" => {
            Kind::KubernetesNetworkPolicy
        }
        "stagedglobalnetworkpolicy" | "stagedglobalnetworkpolicies" | "sgnp" => {
            Kind::StagedGlobalNetworkPolicy
        }
        "stagednetworkpolicy" | "stagednetworkpolicies" | "snp" => Kind::StagedNetworkPolicy,
        "stagedkubernetesnetworkpolicy" | "stagedkubernetesnetworkpolicies" | "sknp" => {
            Kind::StagedKubernetesNetworkPolicy
        }
        "globalnetworkset" | "globalnetworksets" | "gns" | "gnetset" => Kind::GlobalNetworkSet,
        "networkset" | "networksets" | "netset" | "netsets" => Kind::NetworkSet,
        "hostendpoint" | "hostendpoints" | "hep" | "heps" => Kind::HostEndpoint,
        "workloadendpoint" | "workloadendpoints" | "wep" | "weps" => Kind::WorkloadEndpoint,
        "profile" | "profiles" | "pro" => Kind::Profile,
        "namespace" | "namespaces" | "ns" => Kind::Namespace,
        "pod" | "pods" | "po" => Kind::Pod,
        "serviceaccount" | "serviceaccounts" | "sa" => Kind::ServiceAccount,
        "felixconfiguration" | "felixconfigurations" | "felixconfig" => Kind::FelixConfiguration,
        "node" | "nodes" | "no" => Kind::Node,
        _ => return None,
    };
    // A group suffix must be the kind's own.
    match group {
        None => Some(kind),
        Some(g) => {
            let own = match kind.api_version().split_once('/') {
                Some((group, _)) => group,
                None => "",
            };
            (g == own || (own.is_empty() && g == "core")).then_some(kind)
        }
    }
}

/// The names `kind_from_name` accepts, for error messages (one per kind).
pub fn kind_names_help() -> &'static str {
    "tier, globalnetworkpolicy (gnp), networkpolicy (np), stagedglobalnetworkpolicy (sgnp), \
     stagednetworkpolicy (snp), stagedkubernetesnetworkpolicy (sknp), \
     kubernetesnetworkpolicy (knp, netpol), globalnetworkset (gns), networkset (netset), \
     hostendpoint (hep), workloadendpoint (wep), profile, namespace (ns), pod (po), \
     serviceaccount (sa), felixconfiguration (felixconfig), node (no); plurals are accepted"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_contract() {
        assert_eq!(
            object_path(Kind::GlobalNetworkPolicy, None, "deny-all"),
            "/apis/projectcalico.org/v3/globalnetworkpolicies/deny-all"
        );
        assert_eq!(
            object_path(Kind::NetworkPolicy, Some("shop"), "web"),
            "/apis/projectcalico.org/v3/namespaces/shop/networkpolicies/web"
        );
        assert_eq!(
            collection_path(Kind::NetworkPolicy, None),
            "/apis/projectcalico.org/v3/networkpolicies"
        );
        assert_eq!(
            object_path(Kind::KubernetesNetworkPolicy, None, "x"),
            "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/x"
        );
        assert_eq!(
            collection_path(Kind::KubernetesNetworkPolicy, None),
            "/apis/networking.k8s.io/v1/networkpolicies"
        );
        assert_eq!(
            object_path(Kind::Namespace, Some("ignored"), "shop"),
            "/api/v1/namespaces/shop"
        );
        assert_eq!(
            object_path(Kind::Pod, Some("shop"), "a"),
            "/api/v1/namespaces/shop/pods/a"
        );
        assert_eq!(
            collection_path(Kind::ServiceAccount, None),
            "/api/v1/serviceaccounts"
        );
        assert_eq!(
            collection_path(Kind::Tier, Some("shop")),
            "/apis/projectcalico.org/v3/tiers"
        );
        assert_eq!(
            collection_path(Kind::StagedKubernetesNetworkPolicy, Some("a")),
            "/apis/projectcalico.org/v3/namespaces/a/stagedkubernetesnetworkpolicies"
        );
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("default.allow-dns"), "default.allow-dns");
    }

    #[test]
    fn every_kind_has_a_distinct_path() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(seen.insert(collection_path(k, None)), "{k}");
        }
    }

    #[test]
    fn kind_names() {
        let cases = [
            ("gnp", Kind::GlobalNetworkPolicy),
            ("GlobalNetworkPolicy", Kind::GlobalNetworkPolicy),
            ("globalnetworkpolicies", Kind::GlobalNetworkPolicy),
            ("np", Kind::NetworkPolicy),
            ("networkpolicy", Kind::NetworkPolicy),
            ("networkpolicies.projectcalico.org", Kind::NetworkPolicy),
            (
                "networkpolicies.networking.k8s.io",
                Kind::KubernetesNetworkPolicy,
            ),
            ("knp", Kind::KubernetesNetworkPolicy),
            ("netpol", Kind::KubernetesNetworkPolicy),
            ("hep", Kind::HostEndpoint),
            ("hostendpoints", Kind::HostEndpoint),
            ("wep", Kind::WorkloadEndpoint),
            ("tier", Kind::Tier),
            ("tiers", Kind::Tier),
            ("ns", Kind::Namespace),
            ("namespaces", Kind::Namespace),
            ("pod", Kind::Pod),
            ("po", Kind::Pod),
            ("sa", Kind::ServiceAccount),
            ("serviceaccount", Kind::ServiceAccount),
            ("profile", Kind::Profile),
            ("profiles", Kind::Profile),
            ("gns", Kind::GlobalNetworkSet),
            ("netset", Kind::NetworkSet),
            ("networksets", Kind::NetworkSet),
            ("sgnp", Kind::StagedGlobalNetworkPolicy),
            ("stagednetworkpolicy", Kind::StagedNetworkPolicy),
            ("snp", Kind::StagedNetworkPolicy),
            ("sknp", Kind::StagedKubernetesNetworkPolicy),
            (
                "StagedKubernetesNetworkPolicy",
                Kind::StagedKubernetesNetworkPolicy,
            ),
            ("pods.core", Kind::Pod),
        ];
        for (name, kind) in cases {
            assert_eq!(kind_from_name(name), Some(kind), "{name}");
        }
        for bad in [
            "",
            "policy",
            "gnps2",
            "pods.projectcalico.org",
            "tier.networking.k8s.io",
        ] {
            assert_eq!(kind_from_name(bad), None, "{bad}");
        }
        // Every kind is reachable by its document name.
        for k in Kind::ALL {
            if k != Kind::KubernetesNetworkPolicy {
                assert_eq!(kind_from_name(k.kind_name()), Some(k));
            }
            assert_eq!(kind_from_name(k.display_name()), Some(k));
        }
    }
}
