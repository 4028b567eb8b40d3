//! Authorization: users, roles and bindings from `<data-dir>/rbac.yaml`, and the decision
//! "may this identity do this verb on this kind, in this namespace, in this tier".
//!
//! A rule names verbs, kinds, namespaces, tiers and object names; `*` matches anything and
//! an omitted list means `*`. A rule with `names` (Kubernetes' `resourceNames`) covers only
//! requests on one of those objects, and lists and watches only for the objects it names:
//! an agent may then write its own node's `Node` and no other. Kinds are written as in documents (`GlobalNetworkPolicy`), except the
//! Kubernetes NetworkPolicy, which is `KubernetesNetworkPolicy` (plain `NetworkPolicy` is
//! Calico's). `namespaces` applies to namespaced kinds only. `tiers` applies to the policy
//! kinds, whose tier is `spec.tier` (`default` when omitted; Kubernetes policies are always
//! in `default`), and to `Tier` objects, whose tier is their own name. Reading the audit log
//! (`GET /bulkhead/v1/audit`) needs verb `list` on kind `AuditRecord`, named explicitly (`*`
//! does not include it). The admin (the token in `admin.token`) may do everything.

use std::collections::HashMap;
use std::fmt;

use bulkhead_api::Kind;
use serde::Deserialize;

use crate::util::sha256_hex;

/// What a request does, as RBAC rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Read one object.
    Get,
    /// Read a collection.
    List,
    /// Watch a collection.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Verb {
    /// The lowercase name used in rules, audit records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }

    /// True for verbs that change state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
        )
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The pseudo-kind that guards `GET /bulkhead/v1/audit` (verb `list`).
pub const AUDIT_KIND: &str = "AuditRecord";

/// The name a rule uses for `kind`.
pub fn rule_kind_name(kind: Kind) -> &'static str {
    kind.display_name()
}

/// True for kinds whose objects belong to a tier.
pub fn is_tiered(kind: Kind) -> bool {
    kind.is_policy() || kind == Kind::Tier
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name (`admin` for the admin token).
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// The admin may do everything.
    pub admin: bool,
}

/// `rbac.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RbacFile {
    /// Users and agents with their tokens.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Who has which role.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Tiers whose changes raise `alert` audit records.
    #[serde(default)]
    pub protected_tiers: Vec<String>,
}

/// One user (or agent).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserEntry {
    /// Name, as audited.
    pub name: String,
    /// Bearer token.
    pub token: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A named set of rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Role {
    /// Name.
    pub name: String,
    /// Rules; one covering a request allows it.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// What a rule allows. Omitted lists mean `*`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Verbs.
    pub verbs: Vec<String>,
    /// Kinds.
    #[serde(default = "star")]
    pub kinds: Vec<String>,
    /// Namespaces (namespaced kinds).
    #[serde(default = "star")]
    pub namespaces: Vec<String>,
    /// Tiers (policy kinds and tiers).
    #[serde(default = "star")]
    pub tiers: Vec<String>,
    /// Object names.
    #[serde(default = "star")]
    pub names: Vec<String>,
}

fn star() -> Vec<String> {
    vec!["*".to_string()]
}

/// Who gets a role.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Binding {
    /// The role's name.
    pub role: String,
    /// Groups that get it.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Users that get it.
    #[serde(default)]
    pub users: Vec<String>,
}

/// One request to decide on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The verb.
    pub verb: Verb,
    /// The kind (rule name).
    pub kind: &'a str,
    /// The namespace, for namespaced kinds (`None`: all namespaces).
    pub namespace: Option<&'a str>,
    /// The tier, for tiered kinds (`None`: any tier).
    pub tier: Option<&'a str>,
    /// The object's name (`None`: a collection, all names).
    pub name: Option<&'a str>,
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{verbs: [{}], kinds: [{}]", self.verb, self.kind)?;
        if let Some(ns) = self.namespace {
            write!(f, ", namespaces: [{ns}]")?;
        }
        if let Some(tier) = self.tier {
            write!(f, ", tiers: [{tier}]")?;
        }
        // No names: the rule to suggest is the one for the kind, not for one object.
        f.write_str("}")
    }
}

/// The loaded policy: token lookup and the rules bound to each user.
#[derive(Debug, Default)]
pub struct Rbac {
    /// SHA-256 of a token → user index. Hashing first means lookups never compare secrets
    /// byte by byte.
    tokens: HashMap<String, usize>,
    users: Vec<Identity>,
    /// Rules per user index.
    rules: Vec<Vec<Rule>>,
    /// Tiers whose changes raise alerts.
    pub protected_tiers: Vec<String>,
}

impl Rbac {
    /// Parses and checks `rbac.yaml` text: every binding names a known role, every verb is
    /// known, tokens are unique and at least 16 characters.
    pub fn parse(text: &str) -> Result<Rbac, String> {
        let file: RbacFile = if text.trim().is_empty() {
            RbacFile::default()
        } else {
            bulkhead_api::yaml::from_str(text).map_err(|e| e.to_string())?
        };
        Rbac::from_file(file)
    }

    /// Builds the lookup tables from a parsed file.
    pub fn from_file(file: RbacFile) -> Result<Rbac, String> {
        const VERBS: [&str; 8] = [
            "get", "list", "watch", "create", "update", "patch", "delete", "*",
        ];
        let roles: HashMap<&str, &Role> = file.roles.iter().map(|r| (r.name.as_str(), r)).collect();
        for role in &file.roles {
            for (i, rule) in role.rules.iter().enumerate() {
                if let Some(v) = rule.verbs.iter().find(|v| !VERBS.contains(&v.as_str())) {
                    return Err(format!(
                        "roles[{}].rules[{i}].verbs: unknown verb {v:?}: expected one of {}",
                        role.name,
                        VERBS.join(", ")
                    ));
                }
                if let Some(k) = rule.kinds.iter().find(|k| !known_kind(k)) {
                    return Err(format!(
                        "roles[{}].rules[{i}].kinds: unknown kind {k:?}",
                        role.name
                    ));
                }
            }
        }
        for (i, b) in file.bindings.iter().enumerate() {
            if !roles.contains_key(b.role.as_str()) {
                return Err(format!("bindings[{i}].role: no role named {:?}", b.role));
            }
        }
        let mut rbac = Rbac {
            protected_tiers: file.protected_tiers.clone(),
            ..Rbac::default()
        };
        for (i, user) in file.users.iter().enumerate() {
            if user.token.len() < 16 {
                return Err(format!(
                    "users[{i}].token: too short: use at least 16 random characters"
                ));
            }
            if user.name == "admin" {
                return Err(format!(
                    "users[{i}].name: \"admin\" is reserved for admin.token"
                ));
            }
            let digest = sha256_hex(user.token.as_bytes());
            if rbac.tokens.insert(digest, i).is_some() {
                return Err(format!(
                    "users[{i}].token: the same token is given to two users"
                ));
            }
            let rules = file
                .bindings
                .iter()
                .filter(|b| {
                    b.users.contains(&user.name) || b.groups.iter().any(|g| user.groups.contains(g))
                })
                .filter_map(|b| roles.get(b.role.as_str()))
                .flat_map(|r| r.rules.iter().cloned())
                .collect();
            rbac.users.push(Identity {
                name: user.name.clone(),
                groups: user.groups.clone(),
                admin: false,
            });
            rbac.rules.push(rules);
        }
        Ok(rbac)
    }

    /// The identity that holds `token`, with its index for [`Rbac::rules`].
    pub fn authenticate(&self, token: &str) -> Option<(usize, &Identity)> {
        let i = *self.tokens.get(&sha256_hex(token.as_bytes()))?;
        Some((i, &self.users[i]))
    }

    /// Rules of user `index`.
    pub fn rules(&self, index: usize) -> &[Rule] {
        self.rules.get(index).map_or(&[], Vec::as_slice)
    }

    /// Number of users (the admin not counted).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// True when `tier` is protected.
    pub fn is_protected(&self, tier: &str) -> bool {
        self.protected_tiers.iter().any(|t| t == tier)
    }
}

fn known_kind(name: &str) -> bool {
    name == "*" || name == AUDIT_KIND || Kind::ALL.iter().any(|k| rule_kind_name(*k) == name)
}

fn matches(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

fn matches_opt(list: &[String], value: Option<&str>) -> bool {
    match value {
        Some(v) => matches(list, v),
        None => list.iter().any(|v| v == "*"),
    }
}

/// `*` covers every resource kind, but the audit log only when named: reading who did what
/// is a separate privilege from reading the resources.
fn kind_matches(list: &[String], kind: &str) -> bool {
    if kind == AUDIT_KIND {
        list.iter().any(|k| k == AUDIT_KIND)
    } else {
        matches(list, kind)
    }
}

/// True when some rule covers `request`. A `None` namespace, tier or name asks for all of
/// them.
pub fn allows(rules: &[Rule], request: &Request<'_>) -> bool {
    let kind = Kind::ALL
        .into_iter()
        .find(|k| rule_kind_name(*k) == request.kind);
    let namespaced = kind.is_some_and(Kind::is_namespaced);
    let tiered = kind.is_some_and(is_tiered);
    rules.iter().any(|r| {
        matches(&r.verbs, request.verb.as_str())
            && kind_matches(&r.kinds, request.kind)
            && (!namespaced || matches_opt(&r.namespaces, request.namespace))
            && (!tiered || matches_opt(&r.tiers, request.tier))
            && matches_opt(&r.names, request.name)
    })
}

/// True when some rule covers `verb` on `kind` for at least one namespace, tier and name:
/// the caller may list or watch, and sees the objects [`allows`] lets through.
pub fn allows_some(rules: &[Rule], verb: Verb, kind: &str) -> bool {
    rules
        .iter()
        .any(|r| matches(&r.verbs, verb.as_str()) && kind_matches(&r.kinds, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
users:
  - {name: alice, token: "alice-token-0123456789", groups: [team-dev]}
  - {name: agent-n1, token: "agent-token-0123456789", groups: [agents]}
roles:
  - name: app-editor
    rules:
      - {verbs: [get, list, watch, create, update, patch, delete],
         kinds: [NetworkPolicy, GlobalNetworkPolicy], tiers: [app], namespaces: ["*"]}
  - name: agent
    rules: [{verbs: [get, list, watch], kinds: ["*"]}]
  - name: node-n1
    rules: [{verbs: [create, patch], kinds: [Node], names: [n1]}]
bindings:
  - {role: app-editor, groups: [team-dev]}
  - {role: agent, groups: [agents]}
  - {role: node-n1, users: [agent-n1]}
protectedTiers: [security]
"#;

    fn req<'a>(
        verb: Verb,
        kind: &'a str,
        ns: Option<&'a str>,
        tier: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            verb,
            kind,
            namespace: ns,
            tier,
            name: None,
        }
    }

    #[test]
    fn a_rule_with_names_covers_those_objects_alone() {
        let rbac = Rbac::parse(FILE).expect("valid");
        let (agent, _) = rbac.authenticate("agent-token-0123456789").expect("agent");
        let rules = rbac.rules(agent);
        let on = |verb, name| Request {
            name,
            ..req(verb, "Node", None, None)
        };
        assert!(allows(rules, &on(Verb::Patch, Some("n1"))));
        assert!(allows(rules, &on(Verb::Create, Some("n1"))));
        assert!(!allows(rules, &on(Verb::Patch, Some("n2"))));
        assert!(!allows(rules, &on(Verb::Delete, Some("n1"))));
        // Without a name (a whole collection), only rules without names cover it.
        assert!(!allows(rules, &on(Verb::Patch, None)));
        assert!(allows(rules, &on(Verb::List, None)));
    }

    #[test]
    fn rules_cover_verbs_kinds_namespaces_and_tiers() {
        let rbac = Rbac::parse(FILE).expect("valid");
        let (alice, who) = rbac.authenticate("alice-token-0123456789").expect("alice");
        assert_eq!(who.name, "alice");
        let rules = rbac.rules(alice);
        assert!(allows(
            rules,
            &req(Verb::Update, "GlobalNetworkPolicy", None, Some("app"))
        ));
        assert!(allows(
            rules,
            &req(Verb::Create, "NetworkPolicy", Some("x"), Some("app"))
        ));
        assert!(!allows(
            rules,
            &req(Verb::Update, "GlobalNetworkPolicy", None, Some("security"))
        ));
        assert!(!allows(
            rules,
            &req(Verb::List, "GlobalNetworkPolicy", None, None)
        ));
        assert!(allows_some(rules, Verb::List, "GlobalNetworkPolicy"));
        assert!(!allows(rules, &req(Verb::Get, "Tier", None, Some("app"))));
        assert!(!allows(
            rules,
            &req(Verb::Get, "KubernetesNetworkPolicy", Some("x"), None)
        ));
        let (agent, _) = rbac.authenticate("agent-token-0123456789").expect("agent");
        let rules = rbac.rules(agent);
        assert!(allows(rules, &req(Verb::Watch, "Pod", None, None)));
        assert!(!allows(rules, &req(Verb::Delete, "Pod", Some("a"), None)));
        assert!(rbac.authenticate("nope-nope-nope-nope").is_none());
        assert!(rbac.is_protected("security"));
    }

    #[test]
    fn bad_files_are_rejected_with_the_field() {
        for (text, want) in [
            ("users: [{name: a, token: short}]", "too short"),
            (
                "roles: [{name: r, rules: [{verbs: [fly]}]}]",
                "unknown verb",
            ),
            (
                "roles: [{name: r, rules: [{verbs: [get], kinds: [Nope]}]}]",
                "unknown kind",
            ),
            ("bindings: [{role: missing, groups: [g]}]", "no role named"),
            (
                "users: [{name: a, token: t0123456789abcdef, extra: 1}]",
                "extra",
            ),
        ] {
            let err = Rbac::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
