//! The parents that endpoints and network sets inherit labels from, and the profiles
//! endpoint chains end in.
//!
//! A parent is a profile name. Its labels and rules come from, in this order (the model's
//! order, `model.rs`): a Profile resource of that name; else, for `kns.<ns>`, a namespace
//! that exists (a Namespace resource, or anything in it that implies it: a Pod,
//! WorkloadEndpoint or NetworkSet), whose profile allows everything and carries the
//! namespace's labels as `pcns.*`; else, for `ksa.<ns>.<sa>`, a service account that exists
//! (a ServiceAccount resource, or a Pod or WorkloadEndpoint running as it), with no rules
//! and its labels as `pcsa.*`; else, for `projectcalico-default-allow`, allow-all without
//! labels; else nothing (the profile does not exist: an endpoint chain drops there).
//!
//! The index also records which items name each parent ([`InheritIndex::children`]), so
//! that a parent's change re-flattens exactly those items. Every mutation returns the
//! parents whose labels or rules may have changed; the graph does the propagation.
//!
//! What it does not do: flatten labels (the engine's `incremental::endpoint` does, given
//! [`InheritIndex::labels_of`]) or know which items are local.

use std::collections::{BTreeSet, HashMap, HashSet};

use bulkhead_api::LabelMap;
use bulkhead_engine::compile::{Profile, allow_all_profile};
use bulkhead_engine::endpoint::{
    DEFAULT_ALLOW_PROFILE, namespace_profile_labels, namespace_profile_name,
    service_account_profile_labels, service_account_profile_name,
};
use bulkhead_engine::incremental::{implied_namespace_labels, service_account_profile};

use crate::ItemId;

/// A namespace or service account: described by a resource, implied by references, or
/// both.
#[derive(Debug, Default)]
struct Parent {
    /// Labels of the describing resource.
    explicit: Option<LabelMap>,
    /// Items that imply it.
    implied: usize,
    /// Its profile's labels (`pcns.*`/`pcsa.*`), while it exists.
    profile_labels: Option<LabelMap>,
}

/// A Profile resource.
#[derive(Debug)]
struct ExplicitProfile {
    labels: LabelMap,
    profile: Profile,
}

/// Parents, their labels and rules, and which items name them.
#[derive(Debug, Default)]
pub(crate) struct InheritIndex {
    namespaces: HashMap<String, Parent>,
    service_accounts: HashMap<(String, String), Parent>,
    /// `ksa.<ns>.<sa>` → the service accounts with that profile name (names with dots can
    /// collide; the model lets the first in `(ns, sa)` order win).
    sa_profiles: HashMap<String, BTreeSet<(String, String)>>,
    profiles: HashMap<String, ExplicitProfile>,
    children: HashMap<String, HashSet<ItemId>>,
}

impl InheritIndex {
    /// The labels items inherit from parent `name`, if it has any.
    pub(crate) fn labels_of(&self, name: &str) -> Option<&LabelMap> {
        if let Some(p) = self.profiles.get(name) {
            return Some(&p.labels);
        }
        if let Some(ns) = name.strip_prefix("kns.")
            && let Some(labels) = self
                .namespaces
                .get(ns)
                .and_then(|p| p.profile_labels.as_ref())
        {
            return Some(labels);
        }
        self.sa_profiles
            .get(name)
            .and_then(|keys| keys.first())
            .and_then(|key| self.service_accounts.get(key))
            .and_then(|p| p.profile_labels.as_ref())
    }

    /// The profile called `name`, if it exists.
    pub(crate) fn profile(&self, name: &str) -> Option<Profile> {
        if let Some(p) = self.profiles.get(name) {
            return Some(p.profile.clone());
        }
        if let Some(ns) = name.strip_prefix("kns.")
            && self
                .namespaces
                .get(ns)
                .is_some_and(|p| p.profile_labels.is_some())
        {
            return Some(allow_all_profile(name));
        }
        if self.sa_profiles.contains_key(name) {
            return Some(service_account_profile(name));
        }
        (name == DEFAULT_ALLOW_PROFILE).then(|| allow_all_profile(name))
    }

    /// The items that name parent `name`.
    pub(crate) fn children(&self, name: &str) -> impl Iterator<Item = ItemId> + '_ {
        self.children.get(name).into_iter().flatten().copied()
    }

    /// Records that `item` names `old` parents no longer and `new` ones now.
    pub(crate) fn set_parents(&mut self, item: ItemId, old: &[String], new: &[String]) {
        for name in old.iter().filter(|n| !new.contains(n)) {
            if let Some(set) = self.children.get_mut(name) {
                set.remove(&item);
                if set.is_empty() {
                    self.children.remove(name);
                }
            }
        }
        for name in new {
            self.children.entry(name.clone()).or_default().insert(item);
        }
    }

    /// Sets (`Some`) or removes a Namespace resource's labels (as
    /// `incremental::namespace_labels` gives them). Returns the changed parents.
    pub(crate) fn set_namespace(&mut self, ns: &str, labels: Option<LabelMap>) -> Vec<String> {
        let parent = self.namespaces.entry(ns.to_string()).or_default();
        parent.explicit = labels;
        self.refresh_namespace(ns)
    }

    /// Adds (`+1`) or drops (`-1`) one item's implication of namespace `ns`.
    pub(crate) fn imply_namespace(&mut self, ns: &str, delta: isize) -> Vec<String> {
        let parent = self.namespaces.entry(ns.to_string()).or_default();
        parent.implied = parent.implied.saturating_add_signed(delta);
        self.refresh_namespace(ns)
    }

    fn refresh_namespace(&mut self, ns: &str) -> Vec<String> {
        let Some(parent) = self.namespaces.get_mut(ns) else {
            return Vec::new();
        };
        let labels = match (&parent.explicit, parent.implied) {
            (Some(labels), _) => Some(namespace_profile_labels(ns, labels)),
            (None, 0) => None,
            (None, _) => Some(namespace_profile_labels(ns, &implied_namespace_labels(ns))),
        };
        let changed = parent.profile_labels != labels;
        parent.profile_labels = labels;
        if parent.explicit.is_none() && parent.implied == 0 {
            self.namespaces.remove(ns);
        }
        if changed {
            vec![namespace_profile_name(ns)]
        } else {
            Vec::new()
        }
    }

    /// Sets or removes a ServiceAccount resource's labels. Returns the changed parents.
    pub(crate) fn set_service_account(
        &mut self,
        key: (String, String),
        labels: Option<LabelMap>,
    ) -> Vec<String> {
        self.service_accounts
            .entry(key.clone())
            .or_default()
            .explicit = labels;
        self.refresh_service_account(key)
    }

    /// Adds (`+1`) or drops (`-1`) one item's implication of a service account.
    pub(crate) fn imply_service_account(
        &mut self,
        key: (String, String),
        delta: isize,
    ) -> Vec<String> {
        let parent = self.service_accounts.entry(key.clone()).or_default();
        parent.implied = parent.implied.saturating_add_signed(delta);
        self.refresh_service_account(key)
    }

    fn refresh_service_account(&mut self, key: (String, String)) -> Vec<String> {
        let Some(parent) = self.service_accounts.get_mut(&key) else {
            return Vec::new();
        };
        let (ns, sa) = (&key.0, &key.1);
        let labels = match (&parent.explicit, parent.implied) {
            (Some(labels), _) => Some(service_account_profile_labels(sa, labels)),
            (None, 0) => None,
            (None, _) => Some(service_account_profile_labels(sa, &LabelMap::new())),
        };
        let changed = parent.profile_labels != labels;
        let exists = labels.is_some();
        parent.profile_labels = labels;
        let name = service_account_profile_name(ns, sa);
        if exists {
            self.sa_profiles
                .entry(name.clone())
                .or_default()
                .insert(key.clone());
        } else {
            self.service_accounts.remove(&key);
            if let Some(keys) = self.sa_profiles.get_mut(&name) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.sa_profiles.remove(&name);
                }
            }
        }
        if changed { vec![name] } else { Vec::new() }
    }

    /// Sets (`Some`: labels to apply and compiled rules) or removes a Profile resource.
    /// Returns the changed parents.
    pub(crate) fn set_profile(
        &mut self,
        name: &str,
        profile: Option<(LabelMap, Profile)>,
    ) -> Vec<String> {
        match profile {
            Some((labels, profile)) => {
                self.profiles
                    .insert(name.to_string(), ExplicitProfile { labels, profile });
            }
            None => {
                if self.profiles.remove(name).is_none() {
                    return Vec::new();
                }
            }
        }
        vec![name.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn implied_and_explicit_namespaces_balance() {
        let mut idx = InheritIndex::default();
        assert!(idx.profile("kns.a").is_none());
        assert_eq!(idx.imply_namespace("a", 1), vec!["kns.a".to_string()]);
        assert_eq!(idx.imply_namespace("a", 1), Vec::<String>::new());
        assert_eq!(
            idx.labels_of("kns.a")
                .and_then(|l| l.get("pcns.kubernetes.io/metadata.name")),
            Some(&"a".to_string())
        );
        let explicit = map(&[("env", "prod"), ("kubernetes.io/metadata.name", "a")]);
        assert_eq!(
            idx.set_namespace("a", Some(explicit)),
            vec!["kns.a".to_string()]
        );
        assert_eq!(idx.imply_namespace("a", -1), Vec::<String>::new());
        assert_eq!(idx.imply_namespace("a", -1), Vec::<String>::new());
        assert!(idx.profile("kns.a").is_some());
        assert_eq!(idx.set_namespace("a", None), vec!["kns.a".to_string()]);
        assert!(idx.profile("kns.a").is_none());
        assert!(idx.namespaces.is_empty());
    }

    #[test]
    fn explicit_profiles_override_namespace_profiles() {
        let mut idx = InheritIndex::default();
        idx.imply_namespace("a", 1);
        let custom = Profile {
            name: "kns.a".into(),
            ingress: Vec::new(),
            egress: Vec::new(),
        };
        idx.set_profile("kns.a", Some((map(&[("x", "y")]), custom)));
        assert_eq!(idx.labels_of("kns.a"), Some(&map(&[("x", "y")])));
        assert!(idx.profile("kns.a").is_some_and(|p| p.ingress.is_empty()));
        idx.set_profile("kns.a", None);
        assert!(idx.profile("kns.a").is_some_and(|p| !p.ingress.is_empty()));
    }

    #[test]
    fn service_accounts_exist_while_implied_or_described() {
        let mut idx = InheritIndex::default();
        let key = ("ns".to_string(), "sa".to_string());
        assert_eq!(
            idx.imply_service_account(key.clone(), 1),
            vec!["ksa.ns.sa".to_string()]
        );
        assert!(idx.profile("ksa.ns.sa").is_some());
        idx.set_service_account(key.clone(), Some(map(&[("role", "x")])));
        assert_eq!(
            idx.labels_of("ksa.ns.sa").and_then(|l| l.get("pcsa.role")),
            Some(&"x".to_string())
        );
        idx.imply_service_account(key.clone(), -1);
        idx.set_service_account(key, None);
        assert!(idx.profile("ksa.ns.sa").is_none());
        assert!(idx.service_accounts.is_empty() && idx.sa_profiles.is_empty());
    }
}
