//! The resource table: for every [`Kind`], its API group, version and plural, the HTTP paths
//! that serve it and the store keys that hold it.
//!
//! Store keys are `/registry/<group>/<plural>/<namespace>/<name>` for namespaced kinds and
//! `/registry/<group>/<plural>/<name>` for cluster-scoped ones, where `<group>` is the API
//! group (`projectcalico.org`, `networking.k8s.io`, or `core` for Kubernetes `v1`). Every
//! plural is unique within its group, so the prefix `/registry/<group>/<plural>/` holds
//! exactly one kind, and `/registry/<group>/<plural>/<namespace>/` one namespace of it.

use bulkhead_api::Kind;

/// The root of every key the server writes.
pub const REGISTRY_ROOT: &str = "/registry/";

/// How one kind is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind.
    pub kind: Kind,
    /// API group; empty for the Kubernetes core group.
    pub group: &'static str,
    /// API version within the group (`v3`, `v1`).
    pub version: &'static str,
    /// Lowercase plural used in paths and keys.
    pub plural: &'static str,
}

impl KindInfo {
    /// The table entry for `kind`.
    pub fn of(kind: Kind) -> KindInfo {
        let (group, version) = match kind.api_version() {
            "projectcalico.org/v3" => ("projectcalico.org", "v3"),
            "networking.k8s.io/v1" => ("networking.k8s.io", "v1"),
            _ => ("", "v1"),
        };
        let plural = kind.plural();
        KindInfo {
            kind,
            group,
            version,
            plural,
        }
    }

    /// The kind served at `group`/`version`/`plural`, if any.
    pub fn lookup(group: &str, version: &str, plural: &str) -> Option<KindInfo> {
        Kind::ALL
            .into_iter()
            .map(KindInfo::of)
            .find(|i| i.group == group && i.version == version && i.plural == plural)
    }

    /// The group as it appears in store keys (`core` for the core group).
    pub fn store_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// `/apis/<group>/<version>` or `/api/v1`.
    pub fn api_root(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path: in `namespace` for namespaced kinds when given, else across all
    /// namespaces (or the cluster-scoped collection).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.kind.is_namespaced() => {
                format!("{}/namespaces/{ns}/{}", self.api_root(), self.plural)
            }
            _ => format!("{}/{}", self.api_root(), self.plural),
        }
    }

    /// The path of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }

    /// The key prefix of the kind, or of one namespace of it.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.kind.is_namespaced() => {
                format!(
                    "{REGISTRY_ROOT}{}/{}/{ns}/",
                    self.store_group(),
                    self.plural
                )
            }
            _ => format!("{REGISTRY_ROOT}{}/{}/", self.store_group(), self.plural),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }

    /// The kind, namespace and name a store key stands for.
    pub fn parse_key(key: &str) -> Option<(KindInfo, Option<String>, String)> {
        let rest = key.strip_prefix(REGISTRY_ROOT)?;
        let mut parts = rest.split('/');
        let group = parts.next()?;
        let plural = parts.next()?;
        let group = if group == "core" { "" } else { group };
        let info = Kind::ALL
            .into_iter()
            .map(KindInfo::of)
            .find(|i| i.group == group && i.plural == plural)?;
        let (namespace, name) = if info.kind.is_namespaced() {
            (Some(parts.next()?.to_string()), parts.next()?.to_string())
        } else {
            (None, parts.next()?.to_string())
        };
        if parts.next().is_some() || name.is_empty() {
            return None;
        }
        Some((info, namespace, name))
    }

    /// The `kind` of a list of this kind (`NetworkPolicyList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind.kind_name())
    }
}

/// What a request path under `/api` or `/apis` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The kind.
    pub info: KindInfo,
    /// The namespace from the path (`None`: all namespaces, or a cluster-scoped kind).
    pub namespace: Option<String>,
    /// The object name (`None`: the collection).
    pub name: Option<String>,
}

/// Why a path names no resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Nothing is served there.
    NotFound(String),
}

impl Target {
    /// Parses a request path (without the query).
    pub fn parse(path: &str) -> Result<Target, PathError> {
        let not_found = || PathError::NotFound(format!("the server could not find {path}"));
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Err(not_found()),
        };
        if rest.iter().any(|s| s.is_empty()) {
            return Err(not_found());
        }
        let lookup = |plural: &str| KindInfo::lookup(group, version, plural).ok_or_else(not_found);
        let (info, namespace, name) = match rest {
            [plural] => (lookup(plural)?, None, None),
            [plural, name] => {
                let info = lookup(plural)?;
                if info.kind.is_namespaced() {
                    return Err(not_found());
                }
                (info, None, Some(name.to_string()))
            }
            ["namespaces", ns, plural] => (lookup(plural)?, Some(ns.to_string()), None),
            ["namespaces", ns, plural, name] => (
                lookup(plural)?,
                Some(ns.to_string()),
                Some(name.to_string()),
            ),
            _ => return Err(not_found()),
        };
        if namespace.is_some() && !info.kind.is_namespaced() {
            return Err(not_found());
        }
        Ok(Target {
            info,
            namespace,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_paths_and_keys() {
        for kind in Kind::ALL {
            let info = KindInfo::of(kind);
            let ns = kind.is_namespaced().then_some("team-a");
            let target = Target::parse(&info.object_path(ns, "web")).expect("object path");
            assert_eq!(target.info, info);
            assert_eq!(target.namespace.as_deref(), ns);
            assert_eq!(target.name.as_deref(), Some("web"));
            let target = Target::parse(&info.collection_path(None)).expect("collection");
            assert_eq!(
                (target.info, target.namespace, target.name),
                (info, None, None)
            );
            let key = info.key(ns, "web");
            assert!(key.starts_with(&info.prefix(ns)));
            let (back, back_ns, name) = KindInfo::parse_key(&key).expect("key");
            assert_eq!((back, back_ns.as_deref(), name.as_str()), (info, ns, "web"));
        }
    }

    #[test]
    fn kinds_with_one_plural_in_two_groups_stay_apart() {
        let calico = KindInfo::of(Kind::NetworkPolicy);
        let k8s = KindInfo::of(Kind::KubernetesNetworkPolicy);
        assert_ne!(calico.prefix(None), k8s.prefix(None));
        assert_eq!(
            Target::parse("/apis/networking.k8s.io/v1/namespaces/a/networkpolicies")
                .map(|t| t.info.kind),
            Ok(Kind::KubernetesNetworkPolicy)
        );
    }

    #[test]
    fn unknown_or_misplaced_paths_are_not_found() {
        for path in [
            "/apis/projectcalico.org/v3/nosuch",
            "/apis/projectcalico.org/v3/networkpolicies/web",
            "/apis/projectcalico.org/v3/namespaces/a/tiers",
            "/apis/projectcalico.org/v2/tiers",
            "/api/v1/namespaces/a/pods/b/c",
            "/api/v1//pods",
            "/other",
        ] {
            assert!(Target::parse(path).is_err(), "{path}");
        }
        let ns = Target::parse("/api/v1/namespaces/prod").expect("namespace object");
        assert_eq!(ns.info.kind, Kind::Namespace);
        assert_eq!(ns.name.as_deref(), Some("prod"));
    }
}
